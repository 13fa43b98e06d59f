"""`lmforge models` and `lmforge datasets`: what the offline catalog holds."""

from __future__ import annotations

import argparse

from lmforge.cli._common import say


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("models", help="list packaged models", epilog="example: lmforge models")
    p.set_defaults(func=list_models)
    p = sub.add_parser("datasets", help="list packaged datasets", epilog="example: lmforge datasets")
    p.set_defaults(func=list_datasets)


def _table(rows: list[tuple[str, ...]]) -> None:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for row in rows:
        say("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip())


def list_models(args: argparse.Namespace) -> int:
    from lmforge.catalog import MODELS

    rows: list[tuple[str, ...]] = [("NAME", "KIND", "PARAMS", "ARCH", "LICENSE", "SOURCE", "INSTALLED")]
    for m in MODELS.values():
        # installed(), not path(): listing the catalog must not start a first-use conversion.
        rows.append((m.name, m.kind, m.parameters, m.architecture, m.license, m.source,
                     "yes" if m.installed() else "no"))
    _table(rows)
    say("Any local Hugging Face folder also works: model.name: /path/to/folder")
    return 0


def list_datasets(args: argparse.Namespace) -> int:
    from lmforge.catalog import DATASETS

    rows: list[tuple[str, ...]] = [("NAME", "TASK", "EXAMPLES", "LANG", "LABELS", "LICENSE", "SOURCE", "INSTALLED")]
    for d in DATASETS.values():
        rows.append((d.name, d.task, d.examples, d.language, ",".join(d.labels) or "-", d.license, d.source,
                     "yes" if d.installed() else "no"))
    _table(rows)
    say("Any CSV, JSONL or Parquet file also works: data.path: my.csv (with data.text_column, data.label_column; "
        "for task: generate, data.prompt_column and data.response_column)")
    return 0
