"""Hyper-parameter search (`lmforge tune`) with Optuna, over any dotted spec key.

- :func:`tune`: prepare once into ``DIR/prepared``, run each trial as a run directory of its own
  (``DIR/trials/NNN``), prune hopeless ones from their validation scores, keep the study in
  ``DIR/study.db`` (a rerun after a kill continues it), copy the winner to ``DIR/best`` and
  evaluate it on the test split once; ``DIR/tune_report.html`` and its PNGs show the search.
- :func:`format_table`: the trials as the terminal table `lmforge tune` prints.

Importing this package is cheap; Optuna, torch and transformers load when a function runs.
"""

from __future__ import annotations

from lmforge.tune._report import REPORT, format_table
from lmforge.tune._study import STUDY_DB, STUDY_NAME
from lmforge.tune._trial import TRIALS, trial_dir
from lmforge.tune._tune import BEST, PREPARED, TuneResult, tune

__all__ = [
    "BEST",
    "PREPARED",
    "REPORT",
    "STUDY_DB",
    "STUDY_NAME",
    "TRIALS",
    "TuneResult",
    "format_table",
    "trial_dir",
    "tune",
]
