"""`lmforge monitor report`: a real round trip (airline run as reference, Chinese reviews as current) and bad inputs."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
from tests._runs import copy_run
from tests.conftest import REPO, cli_env

LMFORGE = [sys.executable, "-m", "lmforge.cli.__main__"]


def run_cli(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = cli_env(tmp_path)
    env.update(OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1")  # a shared 2-core machine
    return subprocess.run(
        [*LMFORGE, *args], cwd=REPO, env=env, capture_output=True, text=True, timeout=300, check=False
    )


def assert_user_error(proc: subprocess.CompletedProcess[str], *fragments: str) -> None:
    assert proc.returncode == 2, (proc.returncode, proc.stderr[-2000:])
    assert proc.stderr.startswith("error: ") and "Traceback" not in proc.stderr
    for fragment in fragments:
        assert fragment in proc.stderr, (fragment, proc.stderr)


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def reference(trained_full: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny run with airline tweets as its train (150) and val (100, negative/positive) splits."""
    from lmforge.catalog import DATASETS, load_dataset

    if not (DATASETS["airline-tweets"].installed() and DATASETS["zh-reviews"].installed()):
        pytest.skip("packaged datasets airline-tweets / zh-reviews are not installed")
    air = load_dataset("airline-tweets").drop_duplicates("text").sample(frac=1.0, random_state=1)
    rows = [{"text": t, "label": y} for t, y in zip(air["text"], air["label"], strict=True)]
    run = copy_run(trained_full, tmp_path_factory.mktemp("report") / "run")
    write_jsonl(run.split_path("train"), rows[:150])
    write_jsonl(run.split_path("val"), [r for r in rows[150:] if r["label"] != "neutral"][:100])
    run.update_manifest()  # a run whose files differ from its manifest is refused (unsigned: --allow-unsigned)
    return run.root


@pytest.fixture(scope="module")
def chinese(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from lmforge.catalog import load_dataset

    zh = load_dataset("zh-reviews").drop_duplicates("text")
    texts = zh[zh["text"].str.len() >= 5].sample(n=80, random_state=0)["text"].tolist()
    return write_jsonl(tmp_path_factory.mktemp("current") / "current.jsonl", [{"text": t} for t in texts])


def test_report_round_trip_flags_a_language_switch(reference: Path, chinese: Path, tmp_path: Path) -> None:
    out = tmp_path / "out" / "drift.html"
    proc = run_cli(
        tmp_path,
        "monitor",
        "report",
        "--reference",
        str(reference),
        "--current",
        str(chinese),
        "--output",
        str(out),
        "--allow-unsigned",
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "verdict: drift" in proc.stdout and "over 80 texts" in proc.stdout
    doc = json.loads(out.with_suffix(".json").read_text(encoding="utf-8"))
    assert doc["verdict"] == "drift" and doc["n_current"] == 80 and doc["no_verdict"] == []
    assert {"embedding", "oov-rate", "text-length-ks"} <= set(doc["drifted"])
    assert {r["name"] for r in doc["results"]} == {
        "accuracy-estimate",
        "confidence-ks",
        "embedding",
        "oov-rate",
        "prediction-chi2",
        "prediction-psi",
        "text-length-ks",
    }
    html = out.read_text(encoding="utf-8")
    assert re.search(r'id="verdict">drift', html)
    assert {"label-mix", "confidence", "text-length"} <= set(re.findall(r'data-chart="([a-z-]+)"', html))
    assert html.count("<polyline") >= 4 and 'data-detector="embedding"' in html
    assert "<script" not in html and set(re.findall(r"https?://[^\s\"'<>]+", html)) <= {
        "http://www.w3.org/2000/svg"
    }


def test_fail_on_drift_exit_code_and_detector_choice(reference: Path, chinese: Path, tmp_path: Path) -> None:
    out = tmp_path / "r.html"
    proc = run_cli(
        tmp_path,
        "monitor",
        "report",
        "--reference",
        str(reference),
        "--current",
        str(chinese),
        "--output",
        str(out),
        "--allow-unsigned",
        "--detectors",
        "oov-rate,text-length-ks",
        "--fail-on-drift",
    )
    assert proc.returncode == 1, proc.stderr[-2000:]
    assert [r["name"] for r in json.loads(out.with_suffix(".json").read_text())["results"]] == [
        "oov-rate",
        "text-length-ks",
    ]


def test_bad_inputs_exit_2_with_a_clear_message(reference: Path, tmp_path: Path) -> None:
    good = write_jsonl(tmp_path / "ok.jsonl", [{"text": f"text {i}"} for i in range(60)])
    small = write_jsonl(tmp_path / "small.jsonl", [{"text": f"text {i}"} for i in range(12)])
    empty = tmp_path / "empty.jsonl"
    empty.write_text("\n", encoding="utf-8")
    broken = tmp_path / "broken.jsonl"
    broken.write_text('{"text": "fine"}\n{"text": oops\n', encoding="utf-8")
    csv_file = tmp_path / "data.csv"
    csv_file.write_text("body,label\nhello,negative\n", encoding="utf-8")
    other = tmp_path / "data.txt"
    other.write_text("hello\n", encoding="utf-8")

    def report(current: Path, *extra: str, ref: Path = reference) -> subprocess.CompletedProcess[str]:
        return run_cli(
            tmp_path,
            "monitor",
            "report",
            "--reference",
            str(ref),
            "--current",
            str(current),
            "--output",
            str(tmp_path / "never.html"),
            "--allow-unsigned",
            *extra,
        )

    assert_user_error(report(good, ref=tmp_path / "no-run"), "no-run", "does not exist")
    assert_user_error(report(tmp_path / "missing.jsonl"), "not found", "missing.jsonl")
    assert_user_error(report(empty), "holds no texts")
    assert_user_error(
        report(small), "holds 12 texts, too few for a drift verdict", "at least 50", "No report was written"
    )
    assert_user_error(report(broken), "line 2 is not valid JSON")
    assert_user_error(report(csv_file), "has no column 'text'", "body, label", "--text-field")
    assert_user_error(report(other), "give a .jsonl or .csv file")
    assert_user_error(report(good, "--detectors", "oov,psi"), "Unknown drift detector 'oov'. Available:")
    assert not (tmp_path / "never.html").exists() and not (tmp_path / "never.json").exists()
