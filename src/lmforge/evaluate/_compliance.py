"""Compliance report: one document about a run, for a reviewer who will not open the folder.

Sections: model card (``MODEL_CARD.md``), data lineage (sources, licenses, fingerprints, file
hashes from the manifest), a PII scan of the training split, fairness (``eval/fairness.json``),
evaluation (``eval/metrics.json``) and the signature status. Every fact the run did not record
says so and names the command that produces it. Markdown or self-contained HTML.
"""

from __future__ import annotations

import datetime as _dt
import html
import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from lmforge.catalog import DATASETS
from lmforge.errors import RunDirError
from lmforge.evaluate._fairness import render_fairness_markdown
from lmforge.guard import SIGNATURE, GuardError, scan_texts, verify_run
from lmforge.rundir import MANIFEST, RunDir, read_split

__all__ = ["compliance_report"]

# A block is ("p", text) | ("list", [text]) | ("table", headers, rows) | ("pre", text) | ("md", markdown)
Block = tuple[Any, ...]


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def _license(manifest: dict[str, Any]) -> str:
    data = manifest.get("data") or {}
    if isinstance(data, dict) and data.get("license"):
        return str(data["license"])
    spec_data = (manifest.get("spec") or {}).get("data") or {}
    if spec_data.get("path"):
        return "not recorded (a user-supplied file: state its license here)"
    name = spec_data.get("dataset")
    if name:
        entry = DATASETS.get(name)
        if entry is not None:
            return str(entry.license)
    return "not recorded"


def _lineage(run: RunDir, manifest: dict[str, Any], max_files: int) -> list[Block]:
    data: dict[str, Any] = manifest["data"] if isinstance(manifest.get("data"), dict) else {}
    versions: dict[str, Any] = manifest["versions"] if isinstance(manifest.get("versions"), dict) else {}
    rows = [
        ["source", data.get("source", "not recorded")],
        ["test source", data.get("test_source") or "carved from the source"],
        ["license", _license(manifest)],
        ["data fingerprint (sha256 of the splits)", data.get("fingerprint", "not recorded")],
        ["split sizes", ", ".join(f"{k} {v}" for k, v in (data.get("counts") or {}).items()) or "not recorded"],
        ["labels", ", ".join(map(str, data.get("labels") or [])) or "not recorded"],
        ["created / updated", f"{manifest.get('created', '?')} / {manifest.get('updated', '?')}"],
        ["parent run", manifest.get("parent") or "none"],
        ["lmforge / torch / transformers",
         " / ".join(str(versions.get(k, "?")) for k in ("lmforge", "torch", "transformers"))],
    ]
    files = manifest.get("files") if isinstance(manifest.get("files"), dict) else {}
    blocks: list[Block] = [("table", ["item", "value"], rows)]
    if files:
        shown = sorted(files.items())[:max_files]
        blocks.append(("p", f"{len(files)} files hashed in the manifest"
                       + (f" (first {max_files} shown):" if len(files) > max_files else ":")))
        blocks.append(("table", ["file", "sha256"], [[k, v] for k, v in shown]))
    return blocks


def _pii(run: RunDir) -> list[Block]:
    path = run.split_path("train")
    if not path.is_file():
        return [("p", "No training split (data/train.jsonl); run `lmforge prepare`.")]
    try:
        texts = [r["text"] for r in read_split(run, "train")]
    except RunDirError:
        return [("p", f"{path} is damaged (a line is not a text record); no PII scan.")]
    scan = scan_texts(texts)
    share = scan.texts_with_pii / scan.n_texts if scan.n_texts else 0.0
    blocks: list[Block] = [("p", f"{scan.texts_with_pii} of {scan.n_texts} training texts ({share:.1%}) contain "
                                 "detected PII.")]
    if scan.counts:
        blocks.append(("table", ["entity type", "count"], [[k, v] for k, v in scan.counts.items()]))
        blocks.append(("p", "To remove it, redact the data before training (`lmforge redact`, or `data.pii: redact` "
                            "in the spec) and re-run the pipeline."))
    return blocks


def _fairness(run: RunDir) -> list[Block]:
    report = _read_json(run.eval_dir / "fairness.json")
    if not isinstance(report, dict) or "warnings" not in report:
        return [("p", f"Not computed. Run `lmforge fairness {run.root} --by-handle` (or --group-field / --keywords).")]
    return [("p", f"Slices by {report.get('groups', '?')} on the {report.get('split', 'test')} split."),
            ("md", render_fairness_markdown(report))]


def _evaluation(run: RunDir) -> list[Block]:
    metrics = _read_json(run.eval_dir / "metrics.json")
    if not isinstance(metrics, dict):
        return [("p", f"No eval/metrics.json; run `lmforge evaluate {run.root}`.")]
    keys = ("accuracy", "macro_f1", "weighted_f1", "ece", "log_loss", "n_test")
    rows = [[k, f"{metrics[k]:.4f}" if isinstance(metrics[k], float) else metrics[k]] for k in keys if k in metrics]
    blocks: list[Block] = [("table", ["metric", "value"], rows)]
    per_class = metrics.get("per_class")
    if isinstance(per_class, dict) and per_class:
        blocks.append(("table", ["label", "precision", "recall", "f1", "support"],
                       [[lab, *(f"{m.get(k, 0):.3f}" for k in ("precision", "recall", "f1")), m.get("support", "?")]
                        for lab, m in per_class.items() if isinstance(m, dict)]))
    return blocks


def _signature(run: RunDir, public_key: Any) -> list[Block]:
    signed = (run.root / SIGNATURE).is_file()
    try:
        result = verify_run(run, public_key, allow_unsigned=True)
    except GuardError as exc:
        return [("p", "**FAILED verification.**"), ("pre", str(exc))]
    if not signed:
        return [("p", f"**Unsigned.** The {result.files_checked} files match the manifest, but nothing vouches for "
                      f"the manifest itself. Sign with `lmforge sign {run.root} --key KEY`.")]
    if not result.signature_checked:
        return [("p", f"Signed by key {result.key_id} ({result.signer}, {result.signed_at}); **not verified**: "
                      "pass the signer's public key (`--public-key`). Files match the manifest.")]
    return [("p", f"**Valid signature** by key {result.key_id} ({result.signer}, {result.signed_at}); "
                  f"{result.files_checked} files match the signed manifest; {result.model_files_scanned} model "
                  "files scanned, none pickle-based or malformed.")]


def _model_card(run: RunDir) -> list[Block]:
    if not run.model_card_path.is_file():
        return [("p", f"No MODEL_CARD.md; run `lmforge evaluate {run.root}`.")]
    text = run.model_card_path.read_text(encoding="utf-8")
    # Demote the card's headings below this section's level.
    return [("md", "\n".join("##" + line if line.startswith("#") else line for line in text.splitlines()))]


def _md_cell(value: Any) -> str:
    return str(value).replace("|", "\\|").replace("\n", " ")


def _render_md(title: str, sections: Iterable[tuple[str, list[Block]]]) -> str:
    out = [f"# {title}", ""]
    for heading, blocks in sections:
        out += [f"## {heading}", ""]
        for block in blocks:
            kind = block[0]
            if kind == "p":
                out += [block[1], ""]
            elif kind == "md":
                out += [block[1].rstrip(), ""]
            elif kind == "pre":
                out += ["```", block[1], "```", ""]
            elif kind == "table":
                headers, rows = block[1], block[2]
                out.append("| " + " | ".join(headers) + " |")
                out.append("|" + "---|" * len(headers))
                out += ["| " + " | ".join(_md_cell(c) for c in row) + " |" for row in rows]
                out.append("")
    return "\n".join(out).rstrip() + "\n"


def _render_html(title: str, sections: Iterable[tuple[str, list[Block]]]) -> str:
    esc = html.escape
    body = [f"<h1>{esc(title)}</h1>"]
    for heading, blocks in sections:
        body.append(f"<h2>{esc(heading)}</h2>")
        for block in blocks:
            kind = block[0]
            if kind == "p":
                # The only markup in paragraphs is **bold**; everything else is escaped.
                parts = esc(block[1]).split("**")
                body.append("<p>" + "".join(f"<b>{p}</b>" if i % 2 else p for i, p in enumerate(parts)) + "</p>")
            elif kind in ("pre", "md"):
                body.append(f"<pre>{esc(block[1])}</pre>")
            elif kind == "table":
                head = "".join(f"<th>{esc(str(h))}</th>" for h in block[1])
                rows = "".join("<tr>" + "".join(f"<td>{esc(str(c))}</td>" for c in row) + "</tr>" for row in block[2])
                body.append(f"<table><thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table>")
    style = ("body{font-family:system-ui,sans-serif;max-width:60rem;margin:2rem auto;padding:0 1rem;color:#222}"
             "table{border-collapse:collapse;margin:.5rem 0}td,th{border:1px solid #ccc;padding:.25rem .5rem;"
             "text-align:left;font-size:.9rem}pre{background:#f6f6f6;padding:.75rem;white-space:pre-wrap}")
    return (f"<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>{esc(title)}</title>"
            f"<style>{style}</style></head><body>\n" + "\n".join(body) + "\n</body></html>\n")


def compliance_report(
    run: RunDir | str | Path, *, public_key: Any = None, fmt: str = "md", max_files: int = 50
) -> str:
    """Render the compliance report of a run.

    Args:
        run: The run directory.
        public_key: The signer's public key (file, bytes or key) to verify the signature with;
            without it the report says whether the run is signed but cannot vouch for it.
        fmt: ``md`` (Markdown) or ``html`` (self-contained, no scripts).
        max_files: Most manifest file hashes listed.

    Returns:
        The document.
    """
    if fmt not in ("md", "html"):
        raise GuardError(f"Unknown report format {fmt!r}; use md or html.")
    run = run if isinstance(run, RunDir) else RunDir(run)
    run.require(MANIFEST, hint="Only a run directory made by lmforge has a compliance report.")
    manifest = run.read_manifest()
    name = ((manifest.get("spec") or {}).get("name")) or run.root.name
    generated = _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds")
    sections = [
        ("Summary", [("table", ["item", "value"], [["run", str(run.root)], ["name", name],
                                                   ["report generated", generated]])]),
        ("Model card", _model_card(run)),
        ("Data lineage", _lineage(run, manifest, max_files)),
        ("PII in the training data", _pii(run)),
        ("Fairness", _fairness(run)),
        ("Evaluation", _evaluation(run)),
        ("Signature and integrity", _signature(run, public_key)),
    ]
    title = f"Compliance report: {name}"
    return _render_html(title, sections) if fmt == "html" else _render_md(title, sections)
