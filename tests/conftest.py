"""Shared fixtures: hermetic HOME, offline hub, and paths to shared test data; and, in CI, no skips.

With ``CI`` set (``CI=true``, as CI and ``.ci/run`` set it), a test or a test module that skips
fails instead, with the skip's reason: a missing extra, browser, dataset or service means CI
did not test what the suite claims. ``xfail`` is not a skip and is left alone.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from lmforge.rundir import RunDir

REPO = Path(__file__).resolve().parents[1]
SHARED_DATASETS = REPO.parent / "shared" / "datasets"


def in_ci() -> bool:
    """Whether ``$CI`` says this is a CI run (``true``, ``1`` or ``yes``, as CI services set it)."""
    return os.environ.get("CI", "").strip().lower() in {"1", "true", "yes"}


def _fail_the_skip(report: pytest.TestReport | pytest.CollectReport) -> None:
    if not (report.skipped and in_ci()) or hasattr(report, "wasxfail"):
        return
    # A skip's longrepr is (path, line, "Skipped: <reason>").
    longrepr = report.longrepr
    where, line, reason = longrepr if isinstance(longrepr, tuple) else ("", 0, str(longrepr))
    report.outcome = "failed"
    report.longrepr = (
        f"skipped in CI (CI={os.environ['CI']}), where a skip is a failure: {reason} ({where}:{line}). "
        "Install what it names: .ci/run installs every extra and service the suite needs."
    )


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]):
    report = yield
    _fail_the_skip(report)
    return report


@pytest.hookimpl(wrapper=True)
def pytest_make_collect_report(collector: pytest.Collector):
    report = yield  # a module-level importorskip skips the whole module here
    _fail_the_skip(report)
    return report


@pytest.fixture(autouse=True)
def _offline(monkeypatch: pytest.MonkeyPatch) -> None:
    # lmforge never reaches a hub; make any attempt fail fast instead of hanging.
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("TRANSFORMERS_OFFLINE", "1")


@pytest.fixture
def shared_datasets() -> Path:
    if not SHARED_DATASETS.is_dir():
        pytest.skip(f"{SHARED_DATASETS} is absent (a user's clone has no ../shared; CI has it)")
    return SHARED_DATASETS


def cli_env(tmp_path: Path) -> dict[str, str]:
    """Environment for CLI subprocesses: hermetic HOME, offline."""
    env = dict(os.environ)
    env.update(HOME=str(tmp_path / "home"), HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", PYTHONUNBUFFERED="1")
    return env


@pytest.fixture(scope="session")
def _home(tmp_path_factory: pytest.TempPathFactory):
    """A session-wide hermetic HOME (onnxruntime and HF write caches under ~)."""
    home = tmp_path_factory.mktemp("home")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("HOME", str(home))
        yield home


@pytest.fixture(scope="session", autouse=True)
def lmforge_home(tmp_path_factory: pytest.TempPathFactory):
    """One ``$LMFORGE_HOME`` for the session: a packaged model converted once (smollm2-135m from
    GGUF) is reused by every test and CLI subprocess (they inherit the variable), never the user's."""
    home = tmp_path_factory.mktemp("lmforge-home")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("LMFORGE_HOME", str(home))
        yield home


@pytest.fixture(scope="session")
def trained_full(tmp_path_factory: pytest.TempPathFactory, _home: Path) -> Path:
    """A fully fine-tuned tiny run (10 steps of minilm-l6); copy it before writing into it."""
    from tests._runs import train_tiny

    return train_tiny(tmp_path_factory.mktemp("full") / "run", "full")


@pytest.fixture(scope="session")
def trained_lora(tmp_path_factory: pytest.TempPathFactory, _home: Path) -> Path:
    """A LoRA tiny run (10 steps); copy it before writing into it."""
    from tests._runs import train_tiny

    return train_tiny(tmp_path_factory.mktemp("lora") / "run", "lora")


@pytest.fixture(scope="session")
def compressed_full(trained_full: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[RunDir, dict]:
    """A copy of the full tiny run with every compressor built (bf16 forced); and the stage summary."""
    from lmforge.compress import compress
    from tests._runs import copy_run, fast_options

    run = copy_run(trained_full, tmp_path_factory.mktemp("compressed") / "run")
    return run, compress(run, fast_options(force_bf16=True))


@pytest.fixture(scope="session")
def compressed_lora(trained_lora: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[RunDir, dict]:
    """A copy of the LoRA tiny run with the adapter merged (and its int8 ONNX export)."""
    from lmforge.compress import compress
    from tests._runs import copy_run, fast_options

    run = copy_run(trained_lora, tmp_path_factory.mktemp("compressed-lora") / "run")
    return run, compress(run, fast_options(only=("merged", "onnx-int8-dynamic")))
