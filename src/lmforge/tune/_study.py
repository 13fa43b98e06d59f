"""The Optuna study behind `lmforge tune`: SQLite inside DIR, one search at a time, killed trials retried.

A search survives ``kill -9`` because every trial's state lives in ``DIR/study.db`` (Optuna's
RDB storage commits each report and each finished trial). What a kill leaves behind is a trial
still marked RUNNING. Optuna's heartbeat would fail it only after a grace period, and only while
a process heartbeats; instead, one search at a time holds ``DIR/.tune.lock`` (``flock``, which
the kernel drops when the holder dies), so the process that takes the lock knows that any RUNNING
trial is a dead one: it marks it FAIL (``killed``) and enqueues its parameters again, so no trial
is lost and none is counted twice. COMPLETE and PRUNED trials are never run again.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from lmforge._extras import require
from lmforge.config import Spec, spec_to_dict
from lmforge.errors import ConfigError

logger = logging.getLogger(__name__)

__all__ = ["STUDY_DB", "STUDY_NAME", "exclusive", "finished_count", "open_study", "optuna_module"]

STUDY_DB = "study.db"
STUDY_NAME = "lmforge-tune"
_LOCK = ".tune.lock"
_SPEC_ATTR = "spec_sha256"


def optuna_module() -> Any:
    """Optuna, or :class:`MissingExtraError` naming ``pip install 'lmforge[tune]'``."""
    optuna = require("optuna", extra="tune", purpose="Hyper-parameter search (lmforge tune)")
    optuna.logging.set_verbosity(optuna.logging.WARNING)  # lmforge prints its own table
    return optuna


@contextlib.contextmanager
def exclusive(root: Path) -> Iterator[None]:
    """Hold ``ROOT/.tune.lock`` for the whole search; a second search on the same DIR is refused."""
    root.mkdir(parents=True, exist_ok=True)
    with open(root / _LOCK, "a+", encoding="utf-8") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise ConfigError(f"Another `lmforge tune` is running on {root} (it holds {root / _LOCK}). "
                              "Wait for it, or give this one another --out.") from None
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _digest(spec: Spec) -> str:
    """The spec a study searches, less the budget (``trials``, ``timeout``), which a rerun may change."""
    raw = spec_to_dict(spec)
    raw["tune"] = {k: v for k, v in raw["tune"].items() if k not in ("trials", "timeout")}
    return hashlib.sha256(repr(sorted(_flat(raw).items())).encode("utf-8")).hexdigest()


def _flat(node: Any, prefix: str = "") -> dict[str, Any]:
    if not isinstance(node, dict):
        return {prefix: repr(node)}
    out: dict[str, Any] = {}
    for key, value in node.items():
        out.update(_flat(value, f"{prefix}.{key}" if prefix else str(key)))
    return out


def _pruner(optuna: Any, spec: Spec, trials: int) -> Any:
    kind = spec.tune.resolved_pruner
    if kind == "median":
        # A trial is compared with the finished ones at the same step: a few must have finished.
        return optuna.pruners.MedianPruner(n_startup_trials=max(1, min(5, trials // 4)), n_warmup_steps=0)
    if kind == "hyperband":
        return optuna.pruners.HyperbandPruner(min_resource=1, max_resource="auto")
    return optuna.pruners.NopPruner()


def finished_count(study: Any) -> int:
    """Trials that used up budget: COMPLETE, PRUNED, and FAIL from an error (not one killed with its process)."""
    state = optuna_module().trial.TrialState
    done = study.get_trials(deepcopy=False, states=(state.COMPLETE, state.PRUNED))
    failed = study.get_trials(deepcopy=False, states=(state.FAIL,))
    return len(done) + sum(1 for t in failed if "error" in t.user_attrs)


def open_study(root: Path, spec: Spec, trials: int) -> Any:
    """Create or load ``ROOT/study.db`` for ``spec`` (call under :func:`exclusive`); retry killed trials.

    Raises:
        ConfigError: ``ROOT`` holds the study of another spec (or another search space).
    """
    optuna = optuna_module()
    cfg = spec.tune
    url = f"sqlite:///{(root / STUDY_DB).resolve()}"
    storage = optuna.storages.RDBStorage(url)
    directions = ["maximize"] + (["minimize"] if cfg.second_objective else [])
    try:
        seen = len(storage.get_all_trials(storage.get_study_id_from_name(STUDY_NAME), deepcopy=False))
    except KeyError:  # no study yet
        seen = 0
    # Seeded, and offset by the trials already in the study: a resumed search does not replay
    # the random start-up proposals it already tried.
    sampler = optuna.samplers.TPESampler(seed=spec.data.seed + seen, n_startup_trials=max(2, min(10, trials // 3)))
    study = optuna.create_study(storage=storage, study_name=STUDY_NAME, load_if_exists=True, directions=directions,
                                sampler=sampler, pruner=_pruner(optuna, spec, trials))
    digest = _digest(spec)
    recorded = study.user_attrs.get(_SPEC_ATTR)
    if recorded is None:
        study.set_user_attr(_SPEC_ATTR, digest)
    elif recorded != digest:
        raise ConfigError(f"{root / STUDY_DB} holds the search of another spec (or another tune.space). "
                          "Give this spec another --out, or delete that folder to start over.")
    _retry_killed(optuna, storage, study)
    return study


def _retry_killed(optuna: Any, storage: Any, study: Any) -> None:
    """Mark every RUNNING trial (its process died: we hold the lock) FAIL and enqueue its parameters again."""
    state = optuna.trial.TrialState
    study_id = storage.get_study_id_from_name(STUDY_NAME)
    for trial in study.get_trials(deepcopy=False, states=(state.RUNNING,)):
        trial_id = storage.get_trial_id_from_study_id_trial_number(study_id, trial.number)
        storage.set_trial_user_attr(trial_id, "killed", True)
        storage.set_trial_state_values(trial_id, state.FAIL)
        original = trial.user_attrs.get("retry_of", trial.number)
        study.enqueue_trial(dict(trial.params), user_attrs={"retry_of": original})
        logger.warning("trial %d was running when its process died: marked failed, its parameters queued again",
                       trial.number)
