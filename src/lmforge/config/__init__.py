"""The spec: dataclass schema, YAML loading, ``--set`` overrides, validation, a trial's spec (``spec_with_params``)."""

from lmforge.config._load import (
    apply_overrides,
    load_spec,
    range_kind,
    spec_from_dict,
    spec_to_dict,
    spec_to_yaml,
    spec_with_params,
)
from lmforge.config._schema import (
    AdaLoraConfig,
    AugmentConfig,
    DataConfig,
    EvalConfig,
    IA3Config,
    LoraConfig,
    ModelConfig,
    Spec,
    TrainConfig,
    TuneConfig,
)
from lmforge.config._sections import AdapterConfig, PrefixConfig, PromptConfig
from lmforge.config._watch import ALERT_ACTIONS, WATCH_METRICS, WatchConfig, parse_duration

__all__ = [
    "ALERT_ACTIONS",
    "WATCH_METRICS",
    "AdaLoraConfig",
    "AdapterConfig",
    "AugmentConfig",
    "DataConfig",
    "EvalConfig",
    "IA3Config",
    "LoraConfig",
    "ModelConfig",
    "PrefixConfig",
    "PromptConfig",
    "Spec",
    "TrainConfig",
    "TuneConfig",
    "WatchConfig",
    "apply_overrides",
    "load_spec",
    "parse_duration",
    "range_kind",
    "spec_from_dict",
    "spec_to_dict",
    "spec_to_yaml",
    "spec_with_params",
]
