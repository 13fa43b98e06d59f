"""Serve settings: defaults, YAML, every problem reported at once, and what a positional target means."""

from __future__ import annotations

from pathlib import Path

import pytest

from lmforge.errors import ConfigError
from lmforge.serve import ServeSettings, load_settings, settings_from_dict, source_overrides, with_monitor


def test_defaults_bind_loopback_and_need_keys() -> None:
    s = ServeSettings()
    assert s.host == "127.0.0.1"
    assert s.auth.metrics_auth is True
    assert s.auth.docs_auth is False
    assert s.database_url.startswith("sqlite:///") and s.database_url.endswith(".lmforge/registry.db")
    assert settings_from_dict(s.to_dict()) == s  # round-trips through plain data


def test_every_problem_is_reported_at_once() -> None:
    with pytest.raises(ConfigError) as err:
        settings_from_dict(
            {
                "port": 70000,
                "backend": "gpu",
                "colour": "red",
                "limits": {"max_texts": 0, "request_timeout_s": -1, "bogus": 1},
                "batching": {"max_batch_size": 0},
            }
        )
    problems = err.value.problems
    text = "\n".join(problems)
    for fragment in (
        "unknown setting 'colour'",
        "unknown setting 'limits.bogus'",
        "limits.max_texts",
        "limits.request_timeout_s",
        "batching.max_batch_size",
    ):
        assert fragment in text, (fragment, text)
    with pytest.raises(ConfigError, match="backend must be one of local, ray"):
        settings_from_dict({"backend": "gpu"})
    with pytest.raises(ConfigError, match="replicas=2 needs backend 'ray'"):
        ServeSettings(replicas=2)


def test_yaml_file_then_flags(tmp_path: Path) -> None:
    path = tmp_path / "serve.yaml"
    path.write_text("port: 9000\nlimits:\n  max_texts: 8\nauth:\n  rate_per_s: 5\n", encoding="utf-8")
    s = load_settings(path, port=9100, host=None)
    assert (s.port, s.host, s.limits.max_texts, s.auth.rate_per_s) == (9100, "127.0.0.1", 8, 5)
    with pytest.raises(ConfigError, match="not found"):
        load_settings(tmp_path / "missing.yaml")
    (tmp_path / "bad.yaml").write_text("- a list\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="must hold a mapping"):
        load_settings(tmp_path / "bad.yaml")


def test_positional_target(tmp_path: Path, trained_full: Path) -> None:
    assert source_overrides(str(trained_full)) == {"source": str(trained_full.resolve())}
    assert source_overrides("postgresql+psycopg://u@h/db") == {"registry_url": "postgresql+psycopg://u@h/db"}
    state = tmp_path / "state"
    state.mkdir()
    (state / "registry.db").touch()
    assert source_overrides(str(state)) == {"state_dir": str(state)}
    assert source_overrides(str(state / "registry.db"))["registry_url"].startswith("sqlite:///")
    with pytest.raises(ConfigError, match="does not exist"):
        source_overrides(str(tmp_path / "nope"))
    with pytest.raises(ConfigError, match="neither a run directory"):
        source_overrides(str(tmp_path))


def test_monitor_flag_puts_the_store_in_the_state_folder(tmp_path: Path) -> None:
    s = with_monitor(ServeSettings(state_dir=str(tmp_path / "state")))
    assert s.monitor.url == f"sqlite:///{(tmp_path / 'state').resolve()}/monitor.db"
    assert with_monitor(s) is s  # a configured monitor is kept
    from_yaml = settings_from_dict({"monitor": {"url": "sqlite:///x.db", "text_policy": "hash"}})
    assert from_yaml.monitor.text_policy == "hash"
    with pytest.raises(ConfigError, match="monitor"):
        settings_from_dict({"monitor": {"colour": "red"}})
