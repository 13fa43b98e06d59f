"""The generative report and model card: metric table, escaped side-by-side rows, cap, headless Chromium."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from tests._chromium import MISSING, Browser, chromium_installed

from lmforge.evaluate import score_answers
from lmforge.evaluate._gen_card import render_generation_card
from lmforge.evaluate._gen_report import REPORT_SAMPLES, render_generation_report
from lmforge.evaluate._summary import run_summary

EVIL = '<script>window.pwned = 1</script><img src=x onerror="window.pwned=2">'


def _rows(n: int) -> list[dict[str, Any]]:
    rows = []
    for i in range(n):
        rows.append({
            "prompt": f"question {i} {EVIL}" if i == 0 else f"question {i}",
            "reference": f"reference {i} & <b>bold</b>",
            "generated": f"answer {i}",
            "finish_reason": "length" if i == 1 else "stop",
            "base_model": f"base {i}",
            "retrieval": f"looked up {i}",
        })
    return rows


def _metrics(rows: list[dict[str, Any]]) -> dict[str, Any]:
    refs = [r["reference"] for r in rows]
    tokens = [3] * len(rows)

    def block(key: str, logliks: Any) -> dict[str, Any]:
        answers = [r[key] for r in rows]
        reasons = [r["finish_reason"] for r in rows] if key == "generated" else ["stop"] * len(rows)
        return score_answers(answers, refs, finish_reasons=reasons, token_counts=tokens, logliks=logliks)

    metrics = block("generated", [(-2.0, 4)] * len(rows))
    metrics["baselines"] = {"base_model": block("base_model", [(-8.0, 4)] * len(rows)),
                            "retrieval": block("retrieval", None)}
    metrics["generation"] = {"max_new_tokens": 32, "temperature": 0.0, "max_test": None, "n_test_split": len(rows)}
    return metrics


def _render(n: int) -> str:
    rows = _rows(n)
    return render_generation_report(title="t <1>", metrics=_metrics(rows), summary=run_summary({}), rows=rows)


def test_report_escapes_every_data_text_and_caps_the_rows() -> None:
    page = _render(REPORT_SAMPLES + 5)
    assert "<script" not in page and "<img" not in page
    assert "&lt;script&gt;window.pwned = 1&lt;/script&gt;" in page
    assert "reference 0 &amp; &lt;b&gt;bold&lt;/b&gt;" in page
    assert "<title>lmforge evaluation: t &lt;1&gt;</title>" in page
    body = page.split('<table class="samples">', 1)[1].split("</table>", 1)[0]
    assert body.count("<tr>") == REPORT_SAMPLES + 1  # the header row, then the capped examples
    assert f"The first {REPORT_SAMPLES} of {REPORT_SAMPLES + 5} test examples" in page
    assert "question 0" in body and f"question {REPORT_SAMPLES - 1}" in body and f"question {REPORT_SAMPLES}<" not in body
    assert body.count("(cut at max_new_tokens)") == 1


def test_report_metric_table_has_the_model_and_both_baselines() -> None:
    page = _render(3)
    table = page.split("<h2>Model and baselines</h2>", 1)[1].split("</table>", 1)[0]
    header = re.findall(r"<th[^>]*>([^<]*)</th>", table)
    assert header == ["Metric", "Fine-tuned", "Base model", "Retrieval"]
    ppl = re.search(r"<td>Perplexity of the references</td>((?:<td[^>]*>[^<]*</td>){3})", table)
    assert ppl is not None
    assert re.findall(r">([^<]*)</td>", ppl.group(1)) == ["1.649", "7.389", "–"]  # e^0.5, e^2, none
    stop = re.search(r"<td>Stop rate \(ended before max_new_tokens\)</td>((?:<td[^>]*>[^<]*</td>){3})", table)
    assert stop is not None and re.findall(r">([^<]*)</td>", stop.group(1)) == ["66.7%", "100.0%", "100.0%"]
    assert "All 3 test examples." in page


def test_generation_card_compares_with_baselines() -> None:
    rows = _rows(3)
    card = render_generation_card(name="demo", metrics=_metrics(rows), summary=run_summary({}),
                                  system="Be brief | kind.")
    assert card.startswith("# Model card: demo\n")
    assert 'System prompt: "Be brief \\| kind.".' in card
    assert "| Metric | Fine-tuned | Base model | Retrieval |" in card
    assert "| Perplexity of the references | 1.649 | 7.389 | n/a |" in card
    assert "- Runaway answers: 33.3% of test answers did not end on their own within 32 new tokens" in card


def test_report_renders_in_headless_chromium_without_running_data(tmp_path: Path) -> None:
    if not chromium_installed():
        pytest.skip(MISSING)
    path = tmp_path / "report.html"
    path.write_text(_render(REPORT_SAMPLES + 5), encoding="utf-8")
    with Browser(tmp_path / "profile") as browser:
        browser.goto(path.as_uri())
        assert browser.eval("typeof window.pwned") == "undefined"
        assert browser.eval("document.querySelectorAll('table.samples tbody tr').length") == REPORT_SAMPLES
        first = browser.eval("document.querySelector('table.samples tbody td').textContent")
        assert first == f"question 0 {EVIL}"  # shown as text, exactly as the data holds it


def test_training_rows_of_a_generative_run_show_the_validation_loss() -> None:
    summary = run_summary({"train": {"method": "lora", "best_val_loss": 1.23456, "best_val_macro_f1": 0.5},
                           "data": {"labels": ["a"]}})
    page = render_generation_report(title="t", metrics=_metrics(_rows(2)), summary=summary, rows=_rows(2))
    assert "<td>Best validation loss</td><td>1.235</td>" in page
    assert "macro-F1" not in page and "<td>Labels</td>" not in page
