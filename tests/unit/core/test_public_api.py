"""Each package's public surface, pinned: a name added to or dropped from an ``__all__`` is a decision.

The other floors may import exactly these names (``tests/unit/core/test_architecture.py``
refuses private ones), so a change here is a change of contract: update the list, the
README or ``docs/architecture.md`` where they name it, and say so in the commit.
"""

from __future__ import annotations

import importlib

import pytest

PUBLIC = {
    "lmforge": [
        "ConfigError", "DataError", "LmforgeError", "MissingExtraError", "NotFittedError",
        "RunDirError", "Spec", "__version__", "load_spec",
    ],
    "lmforge.errors": [
        "ConfigError", "DataError", "LmforgeError", "MissingExtraError", "NotFittedError", "RunDirError",
    ],
    "lmforge.config": [
        "ALERT_ACTIONS", "OOS_METHODS", "WATCH_METRICS", "AdaLoraConfig", "AdapterConfig", "AugmentConfig", "BotConfig",
        "BotGeneratorConfig", "DataConfig", "EscalateConfig", "EvalConfig", "FaqConfig", "IA3Config", "InteractionsConfig",
        "ItemsConfig", "LoraConfig", "ModelConfig", "OosConfig", "PrefixConfig", "PromptConfig", "RecommendConfig",
        "RetrainConfig", "SentimentConfig", "Spec", "TextModelConfig", "TrainConfig", "TuneConfig", "WatchConfig",
        "apply_overrides", "load_spec", "parse_duration", "range_kind", "spec_from_dict", "spec_to_dict", "spec_to_yaml",
        "spec_with_params",
    ],
    "lmforge.apps": ["SERVED_APPS", "Served", "serving_for"],
    "lmforge.apps.watch": [
        "ALL_TOPICS", "SPIKE_DETECTORS", "LiveWatch", "ReplayResult", "Scored", "Scorer", "SpikeDetector", "Stream",
        "StreamRow", "Verdict", "WatchExtension", "WindowStats", "aggregate", "alert_lines", "calibrate_thresholds", "calibrate_watch", "calm_stream",
        "deliver_alerts", "detect", "detect_all", "evaluate_watch", "follow", "get_spike_detector", "inject_surges",
        "iso", "parse_items", "parse_time", "read_incidents", "read_stream", "register_spike_detector", "replay",
        "score_alerts", "serving", "watch_served", "window_start",
    ],
    "lmforge.rundir": [
        "ADAPTER_CONFIG", "BASELINE", "COMPRESSED", "FP32", "LABELS", "MANIFEST", "MODEL", "MODEL_META",
        "ONNX_FILE", "PRUNING", "SELECTED", "SPLITS", "VARIANT_META", "WEIGHTS", "RunDir",
        "atomic_open", "atomic_write_json", "atomic_write_text", "fsync_tree", "is_adapter_dir",
        "read_json", "read_labels", "read_split", "sha256_file",
    ],
    "lmforge.metrics": [
        "baseline_scores", "beats_baselines", "class_indices", "confusion_matrix", "macro_f1",
        "per_class_scores", "required_score", "safe_divide",
    ],
    "lmforge._extras": [
        "require",
    ],
    "lmforge._jsonl": [
        "iter_prompt_records", "iter_records", "iter_text_records",
    ],
    "lmforge._sql": [
        "open_engine",
    ],
    "lmforge._mlflow": [
        "RUN_STORE", "Tracker", "store_location", "uri_problem",
    ],
    "lmforge.guard": [
        "ACTIONS", "AUDIT_KEY_ENV", "AUDIT_LOG_ENV", "AUTO_SIGN_ENV", "KEY_ENV", "PUBLIC_KEY_ENV",
        "SIGNATURE", "SIGNING_KEY_ENV", "AuditLog", "AuditVerification", "CryptoKeyError", "Encryptor",
        "FileStamps", "GuardError", "IntegrityError", "KeyRing", "ModelFileReport", "PrivacyPolicy",
        "RedactionResult", "RunVerification", "UnsafeModelError", "audit_log_from_env", "auto_sign",
        "decrypt_file", "default_actor", "default_signing_key", "detect", "encrypt_file",
        "generate_signing_key", "key_id", "load_encryptor", "load_private_key", "load_public_key",
        "public_key_id", "redact", "redact_texts", "scan_model_dir", "scan_model_file", "scan_texts",
        "sign_run", "trust_before_rewrite", "trust_run", "trusted_public_key", "verify_run",
    ],
    "lmforge.guard.pii": [
        "RECOGNIZERS", "Entity", "PiiScan", "PrivacyPolicy", "Recognizer", "RedactFileSummary",
        "RedactionResult", "RegexRecognizer", "detect", "entity_types", "get_recognizer", "redact",
        "redact_file", "redact_texts", "register_recognizer", "scan_texts",
    ],
    "lmforge.catalog": [
        "CAUSAL_MODEL_TYPES", "DATASETS", "MODELS", "SCRIPT_DEFAULTS", "DatasetEntry", "ModelEntry", "ModelKind",
        "load_dataset", "model_kind", "resolve_model",
    ],
    "lmforge.data": [
        "ExampleCheck", "augment", "check_or_raise", "clean_answer", "clean_text", "eda", "example_prompt",
        "example_response", "find_duplicates", "find_leakage", "hard_to_read_message", "is_example",
        "load_frame", "load_tokenizer", "minhash_signatures", "near_duplicate_pairs", "prepare",
        "prepare_generation", "read_examples", "read_frame", "readability", "readability_decision",
        "script_shares", "stratified_sample", "stratified_split", "unknown_characters", "unreadable_message",
    ],
    "lmforge.predict": [
        "BACKENDS", "BASE_DIGEST", "CAUSAL_LM", "CLASSIFIER_OUTPUTS", "EMBEDDER_META", "EXPLAIN_METHODS", "GENERATOR_FORMATS", "INT8_DYNAMIC",
        "MODULES_CONFIG", "MODULES_FORMAT", "MODULES_WEIGHTS", "PRUNABLE_TYPES", "TOKENIZER_FILES", "Backend", "Explanation",
        "FastTokenizer", "Generation", "Generator", "Messages", "OnnxEmbedder", "OnnxPredictor", "Predictor", "PromptLike",
        "TextEmbedder", "TorchGenerator", "TorchPredictor", "WordAttribution", "apply_pruning_shapes", "attach_modules",
        "available_variants",
        "base_model_digest", "batched_proba",
        "check_prunable", "encoder_layers", "explain", "growing_cache", "head_size", "load_generator", "load_model_folder", "load_modules",
        "load_predictor", "load_torch_model", "mean_pool", "model_layout", "onnx_session", "prune_layer", "pruning_shapes",
        "quantize_int8_dynamic", "read_answer", "read_generator_meta", "read_model_meta",
        "read_selected", "render_prompt", "resolve_variant", "run_kind", "save_int8_causal_lm", "save_modules",
        "save_torch_model", "softmax", "to_messages", "to_predictions", "top_p_filter", "unit_rows",
    ],
    "lmforge.train": [
        "CONTRASTIVE_METHODS", "IGNORE", "METHODS", "HoulsbyAdapter", "Method", "ModulesMethod", "PfeifferAdapter", "PrefixTuning",
        "PromptTuning", "check_virtual_tokens", "encode_example", "fast_bf16", "get_method", "is_causal_lm",
        "per_process_batch", "prompt_length_check", "register_method", "resolve_precision", "sft_collator", "train",
        "train_contrastive",
    ],
    "lmforge.evaluate": [
        "BLOCK_KEYS", "CSS", "GenExample", "NearestPrompt", "RunComparison", "bleu", "chrf", "collect_errors",
        "compare_runs", "compliance_report",
        "compute_metrics", "error_rate_by_length", "escape", "evaluate", "evaluate_generation", "exact_match",
        "fairness_for_run", "fairness_report", "groups_from_field", "groups_from_handles",
        "groups_from_keywords", "html_table", "is_generative_run", "load_labels", "load_test_split", "macro_f1", "mean_length",
        "most_confused",
        "perplexity", "read_generation_split", "render_comparison_html", "render_comparison_text",
        "render_fairness_markdown", "rouge_l", "rouge_l_f",
        "rouge_tokens", "score_answers", "stop_rate", "weak_classes",
    ],
    "lmforge.compress": [
        "COMPRESSORS", "EMBEDDER_MIN_COSINE", "GENERATOR_COMPRESSORS", "MIN_CALIBRATION", "CompressContext",
        "CompressOptions", "Compressor", "GeneratorCompressor", "compress", "export_int8_embedder", "get_compressor", "get_generator_compressor", "parse_budget", "parse_only",
        "register_compressor", "register_generator_compressor", "registered",
        "select_variant",
    ],
    "lmforge.monitor": [
        "ALERT_METRICS", "DETECTORS", "SAMPLING_STRATEGIES", "TEXT_POLICIES", "AlertRule", "DriftData", "DriftDetector",
        "DriftResult", "FeedbackConflictError", "FeedbackForbiddenError", "InvalidLabelError", "LabelImport", "Monitor",
        "MonitorError", "MonitorSettings", "PredictionRecord", "ReferenceState", "UnknownPredictionError",
        "WebhookNotifier", "acquisition_scores", "available_detectors", "classification_metrics", "detector_from_json", "detector_names",
        "drift_report", "fit_detectors", "fit_reference", "get_detector", "import_labels", "k_center", "new_prediction_id",
        "open_store", "read_current", "read_label_file", "register_detector", "reveal_texts", "roc_auc", "sample_for_labelling",
        "store_url",
    ],
    "lmforge.serve": [
        "ApiError", "AuthSettings", "BatchingSettings", "CanarySettings", "ExtensionHost", "GenerationSettings",
        "LimitSettings", "ServeContext", "ServeExtension", "ServeSettings", "admitted", "create_app", "create_key",
        "host_of", "load_settings", "open_stores", "revoke_key", "run_server",
        "settings_from_dict", "source_overrides", "with_monitor",
    ],
    "lmforge.client": [
        "API_KEY_ENV", "ApiError", "Client", "ConnectError",
    ],
    "lmforge.pipeline": [
        "check_spec", "init_run", "load_run_spec", "prepare_run", "run_all", "versions",
    ],
    "lmforge.apps.recommend": [
        "EASE", "MAX_ONLINE_ITEMS", "METRIC_KS", "Answer", "Blend", "Fitted", "Interactions", "ItemKNN",
        "OnlineRecommender", "Popularity", "Prepared", "RecDir", "RecommendError", "RecommendExtension",
        "Recommendations", "Splits", "TextTower", "TfidfContent", "by_user", "evaluate_models", "evaluate_scores",
        "fit_models", "fit_weights", "history_text", "history_windows", "hold_out", "interaction_matrix",
        "load_interactions", "make_splits", "prepare_data", "ranking_metrics", "read_prepared", "recommend",
        "serving", "similar", "simplex_grid", "standardize", "store_online", "tie_order", "top_k",
        "train_recommender", "training_pairs", "user_vectors",
    ],
    "lmforge.apps.support": [
        "BM25", "BOT_MANIFEST", "EVAL", "FAQ", "METRICS", "OOS_WEIGHTS", "REPLY_KEYS", "REPORT", "RUN", "SLOT",
        "Bot", "BotExtension", "FaqEntry", "FaqIndex", "Mahalanobis", "MemorySessions", "Neighbours", "SessionStep",
        "SqlSessions", "Turn", "build_bot", "calibrate", "calibrate_bot", "check_bot_inputs", "choose_method",
        "evaluate_bot", "faq_ranks", "fill_placeholders", "grounded", "next_failures", "oos_scores",
        "outcome_of", "overlap", "read_labeled", "render_bot_report", "rewrite_prompt", "serving", "words",
    ],
    "lmforge.tune": [
        "BEST", "PREPARED", "REPORT", "STUDY_DB", "STUDY_NAME", "TRIALS", "TuneResult", "format_table",
        "trial_dir", "tune",
    ],
}


@pytest.mark.parametrize("package", sorted(PUBLIC))
def test_public_names_are_pinned(package: str) -> None:
    module = importlib.import_module(package)
    assert list(module.__all__) == PUBLIC[package]


@pytest.mark.parametrize("package", sorted(PUBLIC))
def test_every_public_name_exists(package: str) -> None:
    module = importlib.import_module(package)
    missing = [name for name in module.__all__ if not hasattr(module, name)]
    assert missing == []


def test_every_package_declares_its_public_names() -> None:
    from tests.unit.core.test_architecture import _modules

    packages = {name for name, path in _modules() if path.name == "__init__.py"}
    assert packages - set(PUBLIC) <= {"lmforge.cli"}  # the CLI is a program, not a library
