"""Turn every ``bench/results/*.json`` into one Markdown results table and one targets table.

    .venv/bin/python bench/report.py                   # print the tables
    .venv/bin/python bench/report.py --update-readme   # also rewrite them in bench/README.md
    .venv/bin/python bench/report.py --full-only       # leave out --quick results
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
RESULTS = BENCH / "results"
README = BENCH / "README.md"
START, END = "<!-- results:start -->", "<!-- results:end -->"


def num(value: Any) -> str:
    """A value for a table cell: accuracies to 4 decimals, seconds and rates to 1-2."""
    if value is None:
        return "—"
    if isinstance(value, bool):
        return "yes" if value else "**no**"
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        if abs(value) < 1:
            return f"{value:.4f}"
        return f"{value:,.2f}" if abs(value) < 100 else f"{value:,.1f}"
    return str(value)


def ratio(value: Any) -> str:
    return "—" if value is None else f"{value:.2f}×"


def render(docs: list[dict[str, Any]]) -> str:
    """Markdown: a results table (lmforge vs peer) and a targets table, one row per entry."""
    lines = [
        "| Benchmark | Mode | Date | Metric | lmforge | Peer | Peer value | Ratio |",
        "|---|---|---|---|---:|---|---:|---:|",
    ]
    for doc in docs:
        for row in doc.get("summary", []):
            lines.append(
                f"| {doc['benchmark']} | {doc['mode']} | {doc['date'][:10]} | {row['metric']} | "
                f"{num(row.get('lmforge'))} | {doc.get('peer') or '—'} | {num(row.get('peer'))} | "
                f"{ratio(row.get('ratio'))} |"
            )
    lines += ["", "| Benchmark | Mode | Target | Measured | Goal | Met |", "|---|---|---|---:|---|---|"]
    for doc in docs:
        for t in doc.get("targets", []):
            lines.append(
                f"| {doc['benchmark']} | {doc['mode']} | {t['name']} | {num(t['value'])} | {t['goal']} | "
                f"{num(t['met'])} |"
            )
    return "\n".join(lines)


def load(results: Path, full_only: bool) -> list[dict[str, Any]]:
    docs = []
    for path in sorted(results.glob("*.json")):
        try:
            doc = json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as exc:
            print(f"skipping {path}: not valid JSON ({exc})", file=sys.stderr)
            continue
        if not isinstance(doc, dict) or "benchmark" not in doc:
            print(f"skipping {path}: not a benchmark result", file=sys.stderr)
            continue
        if full_only and doc.get("mode") == "quick":
            continue
        docs.append(doc)
    return docs


def update_readme(table: str, readme: Path = README) -> None:
    text = readme.read_text(encoding="utf-8")
    if START not in text or END not in text:
        raise SystemExit(f"{readme} lacks the {START} ... {END} markers; add them where the table goes.")
    head, rest = text.split(START, 1)
    _, tail = rest.split(END, 1)
    readme.write_text(f"{head}{START}\n{table}\n{END}{tail}", encoding="utf-8")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--results", type=Path, default=RESULTS, help="folder of result JSON files")
    ap.add_argument("--full-only", action="store_true", help="leave out results of --quick runs")
    ap.add_argument("--update-readme", action="store_true", help="rewrite the table in bench/README.md")
    args = ap.parse_args()
    docs = load(args.results, args.full_only)
    if not docs:
        kind = "full-mode results" if args.full_only else "results"
        print(f"No {kind} in {args.results}. Run a benchmark first, e.g. .venv/bin/python bench/train_speed.py")
        return 1
    table = render(docs)
    print(table)
    if args.update_readme:
        update_readme(table)
        print(f"\nupdated {README}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
