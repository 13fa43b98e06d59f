"""Each bad input: a clear message, exit code 2, no traceback, nothing half-written."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from tests.conftest import REPO, cli_env

LMFORGE = [sys.executable, "-m", "lmforge.cli.__main__"]


def run_cli(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*LMFORGE, *args], cwd=REPO, env=cli_env(tmp_path), capture_output=True, text=True,
                          timeout=300, check=False)


def assert_user_error(proc: subprocess.CompletedProcess[str], *fragments: str) -> None:
    assert proc.returncode == 2, (proc.returncode, proc.stderr[-2000:])
    assert "Traceback" not in proc.stderr
    assert proc.stderr.startswith("error: ")
    for fragment in fragments:
        assert fragment in proc.stderr, (fragment, proc.stderr)


def write_csv(path: Path, rows: list[tuple[str, str]], header: str = "text,label") -> Path:
    import csv

    with open(path, "w", encoding="utf-8", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(header.split(","))
        writer.writerows(rows)
    return path


def good_rows(n: int = 12) -> list[tuple[str, str]]:
    return [(f"text number {i} about {'cats' if i % 2 else 'dogs'} {'!' * (i % 5)}", "a" if i % 2 else "b")
            for i in range(n)]


def prepare(tmp_path: Path, data: Path, *extra: str) -> tuple[subprocess.CompletedProcess[str], Path]:
    out = tmp_path / "run"
    return run_cli(tmp_path, "prepare", "--out", str(out), "--set", f"data.path={data}", *extra), out


def test_missing_file(tmp_path: Path) -> None:
    proc, out = prepare(tmp_path, tmp_path / "nope.csv")
    assert_user_error(proc, "file not found", "nope.csv")
    assert not out.exists()


def test_missing_columns_lists_columns_found(tmp_path: Path) -> None:
    data = write_csv(tmp_path / "d.csv", good_rows(), header="sentence,label")
    proc, out = prepare(tmp_path, data)
    assert_user_error(proc, "sentence", "data.text_column")
    assert not (out / "data").exists()


def test_a_failed_prepare_leaves_no_run_directory(tmp_path: Path) -> None:
    data = write_csv(tmp_path / "d.csv", good_rows(), header="sentence,label")
    for verb in ("prepare", "run"):
        out = tmp_path / f"run-{verb}"
        proc = run_cli(tmp_path, verb, "--out", str(out), "--set", f"data.path={data}")
        assert_user_error(proc, "sentence", "data.text_column")
        assert not out.exists(), sorted(p.name for p in out.iterdir())


def test_a_failed_prepare_leaves_an_existing_run_as_it_was(tmp_path: Path) -> None:
    ok, out = prepare(tmp_path, write_csv(tmp_path / "good.csv", good_rows(30)))
    assert ok.returncode == 0, ok.stderr
    files = sorted(p for p in out.rglob("*") if p.is_file())
    before = {p: p.read_bytes() for p in files}
    proc, _ = prepare(tmp_path, write_csv(tmp_path / "bad.csv", good_rows(), header="sentence,label"))
    assert_user_error(proc, "data.text_column")
    assert sorted(p for p in out.rglob("*") if p.is_file()) == files
    assert {p: p.read_bytes() for p in files} == before


def test_undecodable_bytes_name_the_encoding(tmp_path: Path) -> None:
    data = tmp_path / "latin.csv"
    data.write_bytes(b"text,label\n" + "caf\xe9 au lait,a\n".encode("latin-1") * 6
                     + "th\xe9 vert,b\n".encode("latin-1") * 6)
    proc, out = prepare(tmp_path, data, "--set", "data.dedupe=false")
    assert_user_error(proc, "utf-8", "data.encoding")
    assert not (out / "data").exists()
    ok, _ = prepare(tmp_path, data, "--set", "data.encoding=latin-1", "--set", "data.dedupe=false")
    assert ok.returncode == 0, ok.stderr


def test_all_empty_texts(tmp_path: Path) -> None:
    data = write_csv(tmp_path / "d.csv", [("   ", "a"), ("\t", "b"), ("", "a")] * 4)
    proc, _ = prepare(tmp_path, data)
    assert_user_error(proc, "empty")


def test_some_empty_texts_are_dropped_and_counted(tmp_path: Path) -> None:
    data = write_csv(tmp_path / "d.csv", good_rows(30) + [("   ", "a"), ("", "b")])
    proc, out = prepare(tmp_path, data)
    assert proc.returncode == 0, proc.stderr
    report = json.loads((out / "data" / "data_report.json").read_text(encoding="utf-8"))
    assert (report["rows_read"], report["rows_after_cleaning"]) == (32, 30)
    assert (report["dropped"]["empty_text"], report["dropped"]["missing_label"]) == (2, 0)
    assert sum(report["counts"].values()) == 30 - report["dropped"]["duplicates"]


def test_label_with_too_few_examples_is_named(tmp_path: Path) -> None:
    data = write_csv(tmp_path / "d.csv", good_rows(20) + [("a lonely example of a rare class", "rare")])
    proc, _ = prepare(tmp_path, data)
    assert_user_error(proc, "rare")


def test_single_class(tmp_path: Path) -> None:
    data = write_csv(tmp_path / "d.csv", [(f"only one class here {i}", "a") for i in range(20)])
    proc, _ = prepare(tmp_path, data, "--set", "data.dedupe=false")
    assert_user_error(proc, "class")


def test_all_labels_missing(tmp_path: Path) -> None:
    data = write_csv(tmp_path / "d.csv", [(f"no label for text {i}", "") for i in range(20)])
    proc, _ = prepare(tmp_path, data)
    assert_user_error(proc, "label")


def test_ten_megabyte_text_is_truncated_with_a_warning(tmp_path: Path) -> None:
    rows = good_rows(30)
    rows.append(("x" * (10 * 1024 * 1024), "a"))
    data = write_csv(tmp_path / "big.csv", rows)
    proc, out = prepare(tmp_path, data, "--set", "data.max_chars=5000")
    assert proc.returncode == 0, proc.stderr[-2000:]
    report = json.loads((out / "data" / "data_report.json").read_text(encoding="utf-8"))
    assert report["truncated"] == 1
    longest = max(len(json.loads(line)["text"]) for split in ("train", "val", "test")
                  for line in (out / "data" / f"{split}.jsonl").read_text(encoding="utf-8").splitlines())
    assert longest <= 5000
    assert "truncat" in proc.stderr.lower()


def test_unknown_model_and_dataset_fail_before_anything_is_written(tmp_path: Path) -> None:
    out = tmp_path / "run"
    proc = run_cli(tmp_path, "run", "--out", str(out), "--set", "model.name=bert-huge",
                   "--set", "data.dataset=imbd")
    assert_user_error(proc, "Unknown model 'bert-huge'", "Available: m3e-small, minilm-l6", "unknown dataset 'imbd'",
                      "airline-tweets")
    assert not out.exists()


def test_spec_typos_are_all_listed(tmp_path: Path) -> None:
    spec = tmp_path / "spec.yaml"
    spec.write_text("data:\n  datset: airline-tweets\ntrain:\n  epocs: 2\n  optimizer: adam\n", encoding="utf-8")
    proc = run_cli(tmp_path, "validate", str(spec))
    assert_user_error(proc, "3 problems", "Did you mean 'dataset'?", "Did you mean 'epochs'?", "'adamw'")
    good = tmp_path / "good.yaml"
    good.write_text("train:\n  epochs: 2\n", encoding="utf-8")
    proc = run_cli(tmp_path, "validate", str(good))
    assert proc.returncode == 0 and "spec is well-formed" in proc.stdout


def test_train_and_predict_on_an_unprepared_directory(tmp_path: Path) -> None:
    proc = run_cli(tmp_path, "train", str(tmp_path / "missing"))
    assert_user_error(proc, "lmforge prepare")
    proc = run_cli(tmp_path, "predict", str(tmp_path), "--text", "hi")
    assert_user_error(proc, "lmforge train")
