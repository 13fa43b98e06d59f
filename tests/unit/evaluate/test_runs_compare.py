"""``lmforge runs compare``: two real tiny runs (different learning rates) side by side, hand-written
generative runs, and the bad inputs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from tests._chromium import MISSING, Browser, chromium_installed
from tests._runs import write_prepared

from lmforge.cli.__main__ import main
from lmforge.config import spec_from_dict, spec_to_yaml
from lmforge.evaluate import compare_runs, render_comparison_html, render_comparison_text


def _trained(root: Path, learning_rate: float) -> tuple[Path, dict, dict]:
    """A tiny run trained and evaluated at ``learning_rate``: (folder, manifest, eval metrics)."""
    from lmforge.evaluate import evaluate
    from lmforge.train import train

    run = write_prepared(root)
    spec = spec_from_dict({"model": {"max_length": 32},
                           "train": {"max_steps": 4, "batch_size": 8, "learning_rate": learning_rate,
                                     "warmup_ratio": 0.0, "track": []}})
    run.spec_path.write_text(spec_to_yaml(spec), encoding="utf-8")  # as prepare writes it
    train(spec, run, progress=False)
    metrics = evaluate(spec, run)
    return root, run.read_manifest(), metrics


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory: pytest.TempPathFactory) -> list[tuple[Path, dict, dict]]:
    root = tmp_path_factory.mktemp("compare")
    return [_trained(root / "lr-2e-4", 2e-4), _trained(root / "lr-1e-3", 1e-3)]


def _row(line: str) -> list[str]:
    return line.split()


@pytest.mark.slow
def test_two_real_runs_show_the_learning_rate_and_every_metric(two_runs: list[tuple[Path, dict, dict]],
                                                                 capsys: pytest.CaptureFixture[str],
                                                                 tmp_path: Path) -> None:
    (a, manifest_a, metrics_a), (b, manifest_b, metrics_b) = two_runs
    out = tmp_path / "compare.html"
    assert main(["runs", "compare", str(a), str(b), "--html", str(out)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert _row(lines[0]) == ["spec", "(keys", "that", "differ)", "lr-2e-4", "lr-1e-3"]
    assert _row(lines[1]) == ["train.learning_rate", "0.0002", "0.001"]  # the only key that differs
    assert lines[2] == ""
    assert _row(lines[3]) == ["metrics", "lr-2e-4", "lr-1e-3"]
    table = lines[:2] + lines[3:-1]
    assert len({len(line) for line in table}) == 1  # both tables' columns aligned alike
    assert lines[1].startswith("train.learning_rate".ljust(len("train.trainable_parameters")) + "  ")
    rows = {_row(line)[0]: _row(line)[1:] for line in lines[4:-1]}
    assert lines[-1] == f"wrote {out}"
    ta, tb = manifest_a["train"], manifest_b["train"]
    assert rows["val.macro_f1"] == [f"{ta['best_val_macro_f1']:.4f}", f"{tb['best_val_macro_f1']:.4f}"]
    assert rows["train.loss"] == [f"{ta['train_loss']:.4f}", f"{tb['train_loss']:.4f}"]
    assert rows["train.steps"] == ["4", "4"]
    assert rows["train.trainable_parameters"] == [str(ta["trainable_parameters"])] * 2
    for key in ("accuracy", "macro_f1", "weighted_f1", "ece", "log_loss"):
        assert rows[f"test.{key}"] == [f"{metrics_a[key]:.4f}", f"{metrics_b[key]:.4f}"]
    assert rows["test.n_test"] == [str(metrics_a["n_test"])] * 2
    assert "val.loss" not in rows  # a classifier's validation score is macro-F1
    assert ta["train_loss"] != tb["train_loss"]  # the learning rate changed what was learned

    page = out.read_text(encoding="utf-8")
    assert "<td>train.learning_rate</td><td>0.0002</td><td>0.001</td>" in page
    acc = f'<td>test.accuracy</td><td class="num">{metrics_a["accuracy"]:.4f}</td>' \
          f'<td class="num">{metrics_b["accuracy"]:.4f}</td>'
    assert acc in page
    assert "http" not in page.replace('lang="en"', "")  # nothing fetched: one self-contained file


@pytest.mark.slow
def test_the_html_page_renders_the_same_table_in_headless_chromium(two_runs: list[tuple[Path, dict, dict]],
                                                                   tmp_path: Path) -> None:
    if not chromium_installed():
        pytest.skip(MISSING)
    comparison = compare_runs([two_runs[0][0], two_runs[1][0]])
    path = tmp_path / "compare.html"
    path.write_text(render_comparison_html(comparison), encoding="utf-8")
    with Browser(tmp_path / "profile") as browser:
        browser.goto(path.as_uri())
        cells = browser.eval("JSON.stringify([...document.querySelectorAll('table')].map(t => "
                             "[...t.querySelectorAll('tbody tr')].map(r => [...r.cells].map(c => c.textContent))))")
    spec, metrics = json.loads(cells)
    assert spec == [[key, *values] for key, values in comparison.spec] == [["train.learning_rate", "0.0002", "0.001"]]
    assert metrics == [[key, *values] for key, values in comparison.metrics]


def _hand_run(root: Path, spec: dict, train: dict, metrics: dict | None) -> Path:
    """A run directory as the stages leave it (manifest, spec.yaml, eval/metrics.json), written by hand."""
    root.mkdir(parents=True)
    (root / "manifest.json").write_text(json.dumps({"spec": spec, "train": train}), encoding="utf-8")
    (root / "spec.yaml").write_text(yaml.safe_dump(spec), encoding="utf-8")
    if metrics is not None:
        (root / "eval").mkdir()
        (root / "eval" / "metrics.json").write_text(json.dumps(metrics), encoding="utf-8")
    return root


def test_generative_and_unevaluated_runs_show_what_they_have(tmp_path: Path) -> None:
    gen = {"rouge_l": 0.41234, "chrf": 38.5, "perplexity": None, "stop_rate": 0.9, "n_test": 20,
           "mean_length": {"tokens": 40.0, "words": 30.0}, "baselines": {"retrieval": {"rouge_l": 0.2}}}
    a = _hand_run(tmp_path / "a" / "run", {"task": "generate", "train": {"method": "lora", "lora": {"r": 8}}},
                  {"best_val_loss": 1.23456, "train_loss": 1.5, "steps": 30}, gen)
    b = _hand_run(tmp_path / "b" / "run", {"task": "generate", "train": {"method": "lora", "lora": {"r": 16}},
                                           "name": "<b>x</b>"},
                  {"best_val_loss": 1.1, "train_loss": 1.4, "steps": 30}, None)
    comparison = compare_runs([a, b])
    assert comparison.names == [str(a), str(b)]  # the same folder name: the paths tell them apart
    assert comparison.spec == [("name", ["-", "<b>x</b>"]), ("train.lora.r", ["8", "16"])]
    assert comparison.metrics == [
        ("val.loss", ["1.2346", "1.1000"]), ("train.loss", ["1.5000", "1.4000"]), ("train.steps", ["30", "30"]),
        ("test.rouge_l", ["0.4123", "-"]), ("test.chrf", ["38.5000", "-"]), ("test.stop_rate", ["0.9000", "-"]),
        ("test.n_test", ["20", "-"]),
    ]
    text = render_comparison_text(comparison)
    width = len("spec (keys that differ)")  # the widest first cell of both tables
    assert f"{'test.rouge_l'.ljust(width)}  {'0.4123'.rjust(len(str(a)))}  {'-'.rjust(len(str(b)))}\n" in text
    assert f"{'train.lora.r'.ljust(width)}  {'8'.rjust(len(str(a)))}  {'16'.rjust(len(str(b)))}\n" in text
    page = render_comparison_html(comparison)
    assert "&lt;b&gt;x&lt;/b&gt;" in page and "<b>x</b>" not in page


def test_identical_specs_say_so(tmp_path: Path) -> None:
    spec = {"train": {"learning_rate": 0.001}}
    a = _hand_run(tmp_path / "a", spec, {}, None)
    b = _hand_run(tmp_path / "b", spec, {}, None)
    assert render_comparison_text(compare_runs([a, b])) == (
        "spec: the same in every run\n\nmetrics: none recorded (train and evaluate the runs first)\n")


def test_bad_input_exits_2_with_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run = _hand_run(tmp_path / "a", {}, {}, None)
    (tmp_path / "empty").mkdir()
    assert main(["runs", "compare", str(run), str(tmp_path / "empty")]) == 2
    assert capsys.readouterr().err == (
        f"error: {tmp_path / 'empty'} is not a run directory (no manifest.json): pass folders written by "
        "`lmforge prepare`, `lmforge train` or `lmforge run`.\n")
    assert main(["runs", "compare", str(run)]) == 2
    assert capsys.readouterr().err == (
        "error: runs compare needs at least two run directories, got 1: lmforge runs compare RUN_A RUN_B [...].\n")
