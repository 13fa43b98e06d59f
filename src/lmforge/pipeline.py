"""Run the stages in order over one run directory: prepare -> train -> evaluate.

Each stage also runs alone (see the CLI verbs); this module only sequences them and keeps
the resolved spec and the library versions in the run directory.
"""

from __future__ import annotations

import difflib
import importlib.metadata as md
import logging
import platform
import shutil
import sys
from pathlib import Path
from typing import Any

from lmforge.catalog import DATASETS, MODELS, model_kind, resolve_model
from lmforge.config import Spec, load_spec, spec_to_dict, spec_to_yaml
from lmforge.data import prepare
from lmforge.errors import ConfigError, LmforgeError
from lmforge.evaluate import evaluate, evaluate_generation, is_generative_run
from lmforge.rundir import RunDir, atomic_write_text
from lmforge.train import METHODS, prompt_length_check, train

logger = logging.getLogger(__name__)

__all__ = ["check_spec", "init_run", "load_run_spec", "prepare_run", "run_all", "versions"]

_VERSIONED = ("lmforge", "torch", "transformers", "peft", "accelerate", "tokenizers", "safetensors",
              "numpy", "pandas", "pyarrow")


def versions() -> dict[str, str]:
    """Python, platform and the installed versions of lmforge and the libraries it runs on."""
    out = {"python": sys.version.split()[0], "platform": platform.platform()}
    for name in _VERSIONED:
        try:
            out[name] = md.version(name)
        except md.PackageNotFoundError:
            continue
    return out


def check_spec(spec: Spec) -> None:
    """Check what the schema alone cannot: catalog names, files on disk, registered methods.

    Also settles ``spec.task``: unset, it comes from the model's kind (an encoder classifies,
    a causal LM generates; keys left unset take that task's defaults); set, the model must be
    of the matching kind. Runs before any stage writes, so a typo in a model name fails in a
    second, not after the data was prepared. Every problem is reported at once.
    """
    problems: list[str] = []
    try:
        model_path = resolve_model(spec.model.name)
    except LmforgeError as exc:
        close = difflib.get_close_matches(spec.model.name, list(MODELS), n=1)
        hint = f" Did you mean '{close[0]}'?" if close else ""
        problems.append(f"model.name: {exc}{hint}")
    else:
        try:
            spec.resolve_task(model_kind(model_path))
        except ConfigError as exc:
            problems.extend(exc.problems)
    for key, value in (("data.path", spec.data.path), ("data.test_path", spec.data.test_path)):
        if value is not None and not Path(value).is_file():
            problems.append(f"{key}: file not found: {value}")
    if spec.data.path is None and spec.data.dataset not in DATASETS:
        close = difflib.get_close_matches(str(spec.data.dataset), list(DATASETS), n=1)
        hint = f" Did you mean '{close[0]}'?" if close else ""
        problems.append(
            f"data.dataset: unknown dataset '{spec.data.dataset}'.{hint} Available: {', '.join(sorted(DATASETS))}; "
            "or set data.path to a CSV, JSONL or Parquet file."
        )
    elif spec.data.path is None and spec.task is not None and DATASETS[str(spec.data.dataset)].task != spec.task:
        entry = DATASETS[str(spec.data.dataset)]
        problems.append(
            f"data.dataset: '{entry.name}' is a {entry.task} dataset but task is '{spec.task}'. Pick a "
            f"{spec.task} dataset: {', '.join(sorted(n for n, d in DATASETS.items() if d.task == spec.task))}."
        )
    if spec.train.method not in METHODS:
        close = difflib.get_close_matches(spec.train.method, list(METHODS), n=1)
        hint = f" Did you mean '{close[0]}'?" if close else ""
        problems.append(
            f"train.method: unknown method '{spec.train.method}'.{hint} Available: {', '.join(sorted(METHODS))}."
        )
    if problems:
        raise ConfigError(problems)


def init_run(spec: Spec, out: str | Path) -> RunDir:
    """Create (or reuse) the run directory and record the resolved spec in it."""
    run = RunDir(out)
    run.root.mkdir(parents=True, exist_ok=True)
    atomic_write_text(run.spec_path, spec_to_yaml(spec))
    run.update_manifest(spec=spec_to_dict(spec), versions=versions(), parent=None)
    return run


def prepare_run(spec: Spec, out: str | Path) -> tuple[RunDir, dict[str, Any]]:
    """Create the run directory and prepare its data, or leave nothing behind.

    The spec is checked first (nothing is written when it is wrong). A classification spec that
    left ``model.name`` unset may have it chosen by prepare for the data's script (Chinese:
    ``lmforge.catalog.SCRIPT_DEFAULTS``); ``spec.yaml`` and the manifest then record that model. When preparing fails, a
    folder this call created is removed, and a run that was already there gets its
    ``spec.yaml`` and ``manifest.json`` back as they were (its ``data/`` is replaced only when
    the new one is complete), so the same command can run again into the same folder.

    Returns:
        The run directory and the data report.
    """
    check_spec(spec)
    run = RunDir(out)
    created = not run.root.exists() or not any(run.root.iterdir())
    saved = {path: path.read_bytes() for path in (run.spec_path, run.manifest_path) if path.is_file()}
    try:
        init_run(spec, run.root)
        check = prompt_length_check(spec) if spec.task == "generate" else None
        written = spec_to_yaml(spec)
        report = prepare(spec, run, check_examples=check)
        if spec_to_yaml(spec) != written:  # prepare chose the model for the data's script
            atomic_write_text(run.spec_path, spec_to_yaml(spec))
            run.update_manifest(spec=spec_to_dict(spec))
        return run, report
    except BaseException:
        if created:
            shutil.rmtree(run.root, ignore_errors=True)
        else:
            for path in (run.spec_path, run.manifest_path):
                if path in saved:
                    path.write_bytes(saved[path])
                else:
                    path.unlink(missing_ok=True)
        raise


def load_run_spec(run: RunDir, overrides: list[str] | tuple[str, ...] = ()) -> Spec:
    """The spec a run was prepared with (``RUN/spec.yaml``), with optional overrides."""
    run.require("spec.yaml", hint="Run `lmforge prepare SPEC --out DIR` (or `lmforge run`) first.")
    spec = load_spec(run.spec_path, overrides)
    if overrides:
        atomic_write_text(run.spec_path, spec_to_yaml(spec))
        run.update_manifest(spec=spec_to_dict(spec))
    return spec


def run_all(spec: Spec, out: str | Path, *, progress: bool = True) -> dict[str, Any]:
    """prepare -> train -> evaluate into ``out``; returns the final metrics.

    A generative run (``task: generate``) is evaluated by ``lmforge.evaluate.evaluate_generation``.
    """
    logger.info("prepare -> %s", Path(out) / "data")
    run, _report = prepare_run(spec, out)
    logger.info("train (%s, %s)", spec.train.method, spec.model.name)
    train(spec, run, progress=progress)
    logger.info("evaluate -> %s", run.eval_dir)
    if is_generative_run(spec, run):
        return evaluate_generation(spec, run, progress=progress)
    return evaluate(spec, run, progress=progress)
