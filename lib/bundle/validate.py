"""Check every config file without running anything, as `databricks bundle validate` does:

    python run_pipeline.py --validate [--env E]

environments (each environment merged with its defaults), the sources, the model (and its on-demand
functions, resolved), every hyperparameters file (its estimator built), the jobs (their
notebooks exist, their base_parameters are names each notebook's parameters cell declares),
the monitors and the alerts. One line per file checked, then `config OK`; the first problem
is one ConfigError line naming the file and the key's path. Every run runs it first.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from lib.bundle import kinds
from lib.core.config import conf_dir, display_path, environment_names, load_env, load_hyperparameters, load_model_config
from lib.core.config.loading import CONF_ENV_VAR
from lib.core.config.model import check_sources, hyperparameters_path
from lib.core.config.sources import load_sources
from lib.core.errors import ConfigError
from lib.features import on_demand
from lib.monitoring.alerts import load_rules
from lib.monitoring.monitors import load_monitors
from lib.platform.workflows.spec import load_jobs


def validate(env: str | None = None, folder: Path | None = None, say: Callable[[str], None] = print) -> None:
    """Check the conf folder (default: the one in use); `env`, if given, must be one of its
    environments. Raises ConfigError on the first problem."""
    conf = folder or conf_dir()
    if not conf.is_dir():
        raise ConfigError(f"conf folder {display_path(conf)} does not exist (--conf or ${CONF_ENV_VAR})")
    found = kinds.files(conf)
    for kind in kinds.FIXED:
        if conf / f"{kind}.yml" not in found:
            raise ConfigError(f"config file {display_path(conf / f'{kind}.yml')} is missing")
    names = environment_names(conf)
    if env is not None and env not in names:
        load_env(env, conf)  # fails, naming the environments there are
    for name in names:
        load_env(name, conf)
    say(f"{display_path(conf / 'environments.yml')}: environments {', '.join(names)}")

    sources = load_sources(conf)
    say(f"{display_path(conf / 'sources.yml')}: sources {', '.join(sources)}")

    model_cfg = load_model_config(conf)
    check_sources(model_cfg, sources)
    made = on_demand.of_model(model_cfg)
    say(
        f"{display_path(conf / 'model.yml')}: {len(model_cfg.features.columns)} features from "
        f"{len(model_cfg.feature_lookups)} lookups and {len(made)} on-demand functions"
    )

    jobs = load_jobs(conf / "jobs.yml")
    say(f"{display_path(conf / 'jobs.yml')}: {len(jobs)} jobs; their notebooks and parameters")
    monitors = load_monitors(conf)
    say(f"{display_path(conf / 'monitors.yml')}: {len(monitors)} monitor(s)")
    rules = load_rules(conf, known_jobs=set(jobs))
    say(f"{display_path(conf / 'alerts.yml')}: {len(rules)} alert(s)")

    # scikit-learn and MLflow take seconds to import: only once every cheaper check has passed.
    from lib.lifecycle import training

    hyper_files = {hyperparameters_path(None, model_cfg)} | {p for p, kind in found.items() if kind == "hyperparameters"}
    for path in sorted(hyper_files):
        _, hyper = load_hyperparameters(path, model_cfg)
        try:
            training.make_pipeline(model_cfg, hyper)  # unknown parameter names fail here
        except ConfigError as exc:
            raise ConfigError(f"{display_path(path)}: params: {exc}") from None
        say(f"{display_path(path)}: {hyper.algorithm}")
    say("config OK")
