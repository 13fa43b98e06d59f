"""The prepare stage: load labeled text, clean, deduplicate, split, check leakage, augment.

``prepare(spec, run)`` writes ``RUN/data/`` (``train/val/test.jsonl``, ``labels.json``,
``data_report.json`` and two plots) and records the data fingerprint in the manifest; later
stages read it back with :func:`lmforge.rundir.read_split` and :func:`lmforge.rundir.read_labels`.
Needs the ``data`` extra (pandas, pyarrow, matplotlib), imported only when used.
"""

from lmforge.data._augment import augment, eda
from lmforge.data._clean import clean_text
from lmforge.data._dedupe import find_duplicates, find_leakage
from lmforge.data._io import load_frame
from lmforge.data._minhash import minhash_signatures, near_duplicate_pairs
from lmforge.data._prepare import prepare
from lmforge.data._readability import (
    check_or_raise,
    hard_to_read_message,
    load_tokenizer,
    readability,
    readability_decision,
    script_shares,
    unknown_characters,
    unreadable_message,
)
from lmforge.data._split import stratified_sample, stratified_split

__all__ = [
    "augment",
    "check_or_raise",
    "clean_text",
    "eda",
    "find_duplicates",
    "find_leakage",
    "hard_to_read_message",
    "load_frame",
    "load_tokenizer",
    "minhash_signatures",
    "near_duplicate_pairs",
    "prepare",
    "readability",
    "readability_decision",
    "script_shares",
    "stratified_sample",
    "stratified_split",
    "unknown_characters",
    "unreadable_message",
]
