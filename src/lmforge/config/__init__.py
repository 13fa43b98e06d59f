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
    AugmentConfig,
    DataConfig,
    EvalConfig,
    LoraConfig,
    ModelConfig,
    Spec,
    TrainConfig,
    TuneConfig,
)

__all__ = [
    "AugmentConfig",
    "DataConfig",
    "EvalConfig",
    "LoraConfig",
    "ModelConfig",
    "Spec",
    "TrainConfig",
    "TuneConfig",
    "apply_overrides",
    "load_spec",
    "range_kind",
    "spec_from_dict",
    "spec_to_dict",
    "spec_to_yaml",
    "spec_with_params",
]
