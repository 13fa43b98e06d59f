"""Compliance report: every section present, facts the run lacks named, signature status right."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from tests.conftest import REPO

from lmforge.cli.__main__ import main
from lmforge.evaluate import compliance_report, fairness_report
from lmforge.guard import generate_signing_key, sign_run
from lmforge.rundir import RunDir, atomic_write_json


def make_run(tmp_path: Path) -> RunDir:
    run = RunDir(tmp_path / "run")
    run.data_dir.mkdir(parents=True)
    texts = ["call 13812345678 about <script>alert(1)</script>", "great flight", "mail me: ana@example.com"]
    run.split_path("train").write_text("".join(json.dumps({"text": t, "label": "x"}) + "\n" for t in texts),
                                       encoding="utf-8")
    run.eval_dir.mkdir()
    atomic_write_json(run.eval_dir / "metrics.json", {
        "accuracy": 0.8123, "macro_f1": 0.7, "weighted_f1": 0.75, "ece": 0.05, "n_test": 10,
        "per_class": {"neg": {"precision": 0.9, "recall": 0.8, "f1": 0.85, "support": 5},
                      "pos": {"precision": 0.7, "recall": 0.8, "f1": 0.75, "support": 5}}})
    report = fairness_report(["neg"] * 4 + ["pos"] * 4, ["neg"] * 4 + ["neg", "pos", "pos", "pos"],
                             ["@a"] * 4 + ["@b"] * 4, ["neg", "pos"], min_support=2)
    atomic_write_json(run.eval_dir / "fairness.json", {"groups": "handles", "split": "test", **report})
    run.model_card_path.write_text("# Model card: demo\n\n## Intended use\nTweets.\n", encoding="utf-8")
    run.update_manifest(spec={"name": "demo", "data": {"dataset": "airline-tweets", "path": None}},
                        data={"source": "airline-tweets", "fingerprint": "f" * 64, "counts": {"train": 3},
                              "labels": ["neg", "pos"]},
                        versions={"lmforge": "0.1.0", "torch": "2.13.0", "transformers": "5.23.0"})
    return run


def test_markdown_report_has_every_section(tmp_path: Path) -> None:
    run = make_run(tmp_path)
    text = compliance_report(run)
    for heading in ("# Compliance report: demo", "## Model card", "## Data lineage", "## PII in the training data",
                    "## Fairness", "## Evaluation", "## Signature and integrity"):
        assert heading in text
    assert "### Model card: demo" in text  # the card's headings are demoted under the section
    assert "CC BY-NC-SA 4.0" in text  # license of the packaged dataset, from the catalog
    assert "f" * 64 in text and "| data/train.jsonl |" in text
    assert "2 of 3 training texts (66.7%) contain detected PII" in text and "| EMAIL | 1 |" in text
    assert "13812345678" not in text and "ana@example.com" not in text  # counts, never the values
    assert "**Warnings**" in text and "| accuracy | 0.8123 |" in text
    assert "**Unsigned.** The" in text


def test_html_report_is_escaped_and_self_contained(tmp_path: Path) -> None:
    run = make_run(tmp_path)
    run.model_card_path.write_text("# Card <script>alert('x')</script>\n", encoding="utf-8")
    run.update_manifest()
    page = compliance_report(run, fmt="html")
    assert page.startswith("<!DOCTYPE html>") and "<script>" not in page and "&lt;script&gt;" in page
    assert "<b>Unsigned.</b>" in page and "http" not in page.replace("https://", "")


def test_signature_status(tmp_path: Path) -> None:
    run = make_run(tmp_path)
    generate_signing_key(tmp_path / "k")
    sign_run(run, tmp_path / "k", signer="release-bot")
    assert "**Valid signature** by key" in compliance_report(run, public_key=tmp_path / "k.pub")
    assert "**not verified**" in compliance_report(run)
    (run.eval_dir / "metrics.json").write_text("{}", encoding="utf-8")
    text = compliance_report(run, public_key=tmp_path / "k.pub")
    assert "**FAILED verification.**" in text and "tampered file: eval/metrics.json" in text


def test_missing_pieces_say_which_command_makes_them(tmp_path: Path) -> None:
    run = RunDir(tmp_path / "bare")
    run.root.mkdir()
    run.update_manifest(spec={"name": "bare", "data": {"path": "mine.csv"}})
    text = compliance_report(run)
    assert "No MODEL_CARD.md; run `lmforge evaluate" in text
    assert "Not computed. Run `lmforge fairness" in text
    assert "No training split" in text and "user-supplied file" in text


def test_cli_report_compliance(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run = make_run(tmp_path)
    assert main(["report", "compliance", str(run.root), "--output", str(tmp_path / "c.html")]) == 0
    assert (tmp_path / "c.html").read_text(encoding="utf-8").startswith("<!DOCTYPE html>")
    capsys.readouterr()
    assert main(["report", "compliance", str(run.root)]) == 0
    assert capsys.readouterr().out.startswith("# Compliance report: demo")
    assert main(["report", "compliance", str(tmp_path / "nope")]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_import_guard_is_light_and_every_verb_has_an_example() -> None:
    code = textwrap.dedent("""
        import sys
        import lmforge.guard, lmforge.guard.pii, lmforge.cli.guard
        from lmforge.guard import redact
        redact("call 13812345678")
        heavy = sorted({m.split(".")[0] for m in sys.modules} & {"torch", "pandas", "transformers", "cryptography",
                                                                  "pickle", "matplotlib"})
        print("HEAVY", heavy)
    """)
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120,
                          check=False)
    assert proc.returncode == 0, proc.stderr
    assert "HEAVY []" in proc.stdout
    from lmforge.cli.__main__ import build_parser

    parser = build_parser()
    verbs = parser._subparsers._group_actions[0].choices  # type: ignore[union-attr]
    for name in ("redact", "sign", "verify", "audit", "key", "fairness", "report", "scan-model", "encrypt"):
        assert "example" in (verbs[name].epilog or ""), name
