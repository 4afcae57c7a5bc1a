import os
import shutil
import subprocess
import sys

import pytest

from lib.core.errors import SetupError
from lib.platform.services import java
from lib.platform.spark import builder as lspark


def fake_java(tmp_path, version_line, modules="java.base\njdk.incubator.vector\n"):
    bin_dir = tmp_path / "jdk" / "bin"
    bin_dir.mkdir(parents=True)
    java = bin_dir / "java"
    java.write_text(f"""#!/bin/sh
if [ "$1" = "--list-modules" ]; then printf '{modules}'; else echo '{version_line}' >&2; fi
""")
    java.chmod(0o755)
    return tmp_path / "jdk"


@pytest.mark.spark  # runs the machine's java: out of `make unit`, which needs no Java
def test_the_machine_java_major_version_is_read_right():
    """check_java parses `java -version`; the JVM's own java.specification.version must agree."""
    shown = subprocess.run(
        [java.java_executable(), "-XshowSettings:properties", "-version"], capture_output=True, text=True, timeout=30
    ).stderr
    spec = [
        line.split("=", 1)[1].strip() for line in shown.splitlines() if line.strip().startswith("java.specification.version =")
    ]
    assert len(spec) == 1, shown
    assert java.check_java() == int(spec[0])


def test_missing_java_home(monkeypatch, tmp_path):
    monkeypatch.setenv("JAVA_HOME", str(tmp_path / "nowhere"))
    with pytest.raises(SetupError, match="has no bin/java"):
        java.check_java()


def test_no_java_on_path(monkeypatch):
    monkeypatch.delenv("JAVA_HOME", raising=False)
    monkeypatch.setenv("PATH", "/nonexistent")
    with pytest.raises(SetupError, match="Java not found: install a JDK 17"):
        java.check_java()


@pytest.mark.parametrize("line,major", [('openjdk version "11.0.2" 2019-01-15', 11), ('java version "1.8.0_292"', 8)])
def test_wrong_java_version(monkeypatch, tmp_path, line, major):
    monkeypatch.setenv("JAVA_HOME", str(fake_java(tmp_path, line)))
    with pytest.raises(SetupError, match=f"is Java {major}; Spark needs Java 17 or 21"):
        java.check_java()


def test_trimmed_runtime_is_refused(monkeypatch, tmp_path):
    monkeypatch.setenv("JAVA_HOME", str(fake_java(tmp_path, 'openjdk version "17.0.9"', modules="java.base\\n")))
    with pytest.raises(SetupError, match="without jdk.incubator.vector"):
        java.check_java()


def test_jar_manifest_is_used_only_when_every_jar_exists(monkeypatch, tmp_path):
    monkeypatch.setenv("LAKEHOUSE_IVY_DIR", str(tmp_path))
    (tmp_path / "jars").mkdir()
    jar = tmp_path / "jars" / "a.jar"
    jar.write_text("")
    assert lspark.cached_jars() is None
    lspark._manifest().write_text(f"file://{jar}\nfile://{tmp_path}/jars/b.jar\n")
    assert lspark.cached_jars() is None
    lspark._manifest().write_text(f"file://{jar}\n")
    assert lspark.cached_jars() == [f"file://{jar}"]


def test_session_has_delta(spark, tmp_path):
    spark.range(3).write.format("delta").save(str(tmp_path / "t"))
    assert spark.read.format("delta").load(str(tmp_path / "t")).count() == 3
    assert "DeltaSparkSessionExtension" in spark.conf.get("spark.sql.extensions")


def can_unshare_network() -> bool:
    if shutil.which("unshare") is None:
        return False
    return subprocess.run(["unshare", "-n", "true"], capture_output=True).returncode == 0


@pytest.mark.spark  # resolves the jars with spark-submit, a JVM: out of `make unit`
@pytest.mark.skipif(not can_unshare_network(), reason="needs `unshare -n` (root) to cut the network")
def test_jars_that_cannot_be_had_are_one_line(tmp_path):
    """With no network and empty caches, resolution fails fast with one line, no Java trace."""
    env = {**os.environ, "LAKEHOUSE_IVY_DIR": str(tmp_path / "ivy"), "HOME": str(tmp_path)}
    result = subprocess.run(
        ["unshare", "-n", sys.executable, "-m", "lib.platform.spark"], capture_output=True, text=True, env=env, timeout=300
    )
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        f"error: Spark's jars ({', '.join(lspark.PACKAGES)}) could not be resolved from ~/.m2, the Ivy cache or "
        f"Maven Central (details in {tmp_path}/ivy/lakehouse-mlops-resolve.log): check the network, then run `make jars`"
    ]
    assert "unresolved dependency" in (tmp_path / "ivy" / "lakehouse-mlops-resolve.log").read_text()
