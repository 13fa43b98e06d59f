"""The spec: dataclass schema, YAML loading, ``--set`` overrides, validation, a trial's spec (``spec_with_params``)."""

from lmforge.config._bot import (
    OOS_METHODS,
    BotConfig,
    BotGeneratorConfig,
    EscalateConfig,
    FaqConfig,
    OosConfig,
    SentimentConfig,
)
from lmforge.config._load import (
    apply_overrides,
    load_spec,
    range_kind,
    spec_from_dict,
    spec_to_dict,
    spec_to_yaml,
    spec_with_params,
)
from lmforge.config._recommend import InteractionsConfig, ItemsConfig, RecommendConfig, TextModelConfig
from lmforge.config._retrain import RetrainConfig
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
    "OOS_METHODS",
    "WATCH_METRICS",
    "AdaLoraConfig",
    "AdapterConfig",
    "AugmentConfig",
    "BotConfig",
    "BotGeneratorConfig",
    "DataConfig",
    "EscalateConfig",
    "EvalConfig",
    "FaqConfig",
    "IA3Config",
    "InteractionsConfig",
    "ItemsConfig",
    "LoraConfig",
    "ModelConfig",
    "OosConfig",
    "PrefixConfig",
    "PromptConfig",
    "RecommendConfig",
    "RetrainConfig",
    "SentimentConfig",
    "Spec",
    "TextModelConfig",
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
