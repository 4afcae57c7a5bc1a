import pytest
from nbclient.exceptions import CellExecutionError

from lib.core.config.sources import load_sources
from lib.features import ingest
from lib.platform.spark import server as spark_server
from lib.platform.spark.builder import REMOTE_ENV_VAR

pytestmark = pytest.mark.slow


@pytest.mark.parametrize("mode", ["connect", "local"])
def test_ingest_writes_the_raw_tables(executed, lakehouse, staging, task_values, monkeypatch, mode):
    """Attached to the session's Spark server, and in-process (`spark.mode: local`, a JVM of its own)."""
    if mode == "local":
        monkeypatch.setenv(spark_server.MODE_ENV_VAR, "local")
        monkeypatch.delenv(REMOTE_ENV_VAR)
    with executed("pipelines/01_ingest.ipynb", env="staging", as_of="2013-03-01") as tb:
        assert tb.value("type(s.spark).__module__") == (
            "pyspark.sql.session" if mode == "local" else "pyspark.sql.connect.session"
        )
    expected = {
        f"staging.raw.{n}": ingest.read_source(lakehouse, n, source, staging.data.start, staging.data.end).count()
        for n, source in load_sources().items()
    }
    assert task_values()["raw_rows"] == expected
    assert {name: lakehouse.read(name).count() for name in expected} == expected


def test_dev_ingest_needs_prod_raw_tables_and_writes_none(executed, lakehouse, home):
    with pytest.raises(CellExecutionError) as failed:
        with executed("pipelines/01_ingest.ipynb", env="dev"):
            pass
    assert (failed.value.ename, failed.value.evalue) == (
        "TableNotFoundError",
        "prod.raw.flights, prod.raw.weather not found: dev reads raw data from catalog prod, "
        "which only its own environment ingests (python run_pipeline.py --env prod --job ingest)",
    )
    assert not (home / "warehouse").exists()


def test_a_parameter_of_the_wrong_type_is_named(executed, home):
    with pytest.raises(CellExecutionError) as failed:
        with executed("pipelines/01_ingest.ipynb", env=3):
            pass
    assert (failed.value.ename, failed.value.evalue) == ("ConfigError", "parameter env must be str, got int 3")
    assert not (home / "warehouse").exists()
