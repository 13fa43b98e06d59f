"""The spec: dataclass schema, YAML loading, ``--set`` overrides, validation."""

from lmforge.config._load import apply_overrides, load_spec, spec_from_dict, spec_to_dict, spec_to_yaml
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
)
from lmforge.config._sections import AdapterConfig, PrefixConfig, PromptConfig

__all__ = [
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
    "apply_overrides",
    "load_spec",
    "spec_from_dict",
    "spec_to_dict",
    "spec_to_yaml",
]
