"""The prepare stage: load labeled text, clean, deduplicate, split, check leakage, augment.

``prepare(spec, run)`` writes ``RUN/data/`` (``train/val/test.jsonl``, ``labels.json``,
``data_report.json`` and two plots) and records the data fingerprint in the manifest; later
stages read it back with :func:`lmforge.rundir.read_split` and :func:`lmforge.rundir.read_labels`.
For ``task: generate`` (:func:`prepare_generation`) the splits hold ``{"prompt", "response"}`` or
``{"messages"}`` rows, read back with :func:`read_examples`. :func:`read_frame` reads the apps' side
files (FAQ, items, interactions) as frames of strings.
Needs the ``data`` extra (pandas, pyarrow, matplotlib), imported only when used.
"""

from lmforge.data._augment import augment, eda
from lmforge.data._clean import clean_text
from lmforge.data._dedupe import find_duplicates, find_leakage
from lmforge.data._examples import example_prompt, example_response, is_example, read_examples
from lmforge.data._frame import read_frame
from lmforge.data._io import load_frame
from lmforge.data._minhash import minhash_signatures, near_duplicate_pairs
from lmforge.data._prepare import prepare
from lmforge.data._prepare_gen import ExampleCheck, clean_answer, prepare_generation
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
    "ExampleCheck",
    "augment",
    "check_or_raise",
    "clean_answer",
    "clean_text",
    "eda",
    "example_prompt",
    "example_response",
    "find_duplicates",
    "find_leakage",
    "hard_to_read_message",
    "is_example",
    "load_frame",
    "load_tokenizer",
    "minhash_signatures",
    "near_duplicate_pairs",
    "prepare",
    "prepare_generation",
    "read_examples",
    "read_frame",
    "readability",
    "readability_decision",
    "script_shares",
    "stratified_sample",
    "stratified_split",
    "unknown_characters",
    "unreadable_message",
]
