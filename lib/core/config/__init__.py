"""Configuration: the YAML files under conf/, each parsed once, at load, into typed models.

    loading      read_yaml, parse_model (one-line errors naming file and key path), conf_dir
    blocks       an environment's serving, spark, publish and notifications blocks
    environment  conf/environments.yml -> EnvConfig (load_env)
    model        conf/model.yml -> ModelConfig, hyperparameters files -> Hyperparameters
    sources      conf/sources.yml -> Source per raw table (load_sources)
    parameters   notebook and CLI parameters (check_param, parse_as_of)

The names below are re-exported so that call sites keep reading `config.load_env(...)`,
`config.check_param(...)`; the block models are imported from their modules.
"""

from lib.core.config.environment import HOME_ENV_VAR, DataWindow, EnvConfig, RunWindows, environment_names, load_env
from lib.core.config.loading import (
    CONF_DIR,
    CONF_ENV_VAR,
    PROJECT_DIR,
    conf_dir,
    deep_merge,
    display_path,
    parse_model,
    read_yaml,
)
from lib.core.config.model import (
    ALGORITHMS,
    APPROVAL_MODES,
    METRICS,
    VALIDATION_MODES,
    Hyperparameters,
    ModelConfig,
    load_hyperparameters,
    load_model_config,
)
from lib.core.config.parameters import check_as_of, check_param, parse_as_of
from lib.core.errors import ConfigError

__all__ = [
    "ALGORITHMS",
    "APPROVAL_MODES",
    "CONF_DIR",
    "CONF_ENV_VAR",
    "HOME_ENV_VAR",
    "METRICS",
    "PROJECT_DIR",
    "VALIDATION_MODES",
    "ConfigError",
    "DataWindow",
    "EnvConfig",
    "Hyperparameters",
    "ModelConfig",
    "RunWindows",
    "check_as_of",
    "check_param",
    "conf_dir",
    "deep_merge",
    "display_path",
    "environment_names",
    "load_env",
    "load_hyperparameters",
    "load_model_config",
    "parse_as_of",
    "parse_model",
    "read_yaml",
]
