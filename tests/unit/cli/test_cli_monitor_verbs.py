"""`lmforge monitor detectors` and `lmforge monitor reference` (the offline report has its e2e test)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from tests._runs import copy_run

from lmforge.cli.__main__ import main
from lmforge.monitor import DETECTORS, ReferenceState, available_detectors, fit_reference
from lmforge.rundir import read_split

NAMES = ["accuracy-estimate", "confidence-ks", "embedding", "oov-rate", "prediction-chi2", "prediction-psi",
         "text-length-ks"]
TEXT_DETECTORS = ["embedding", "oov-rate", "text-length-ks"]
# An output detector needs model outputs on at least min_samples val texts; the tiny run's val split has 8.
MIN_SAMPLES = {"accuracy-estimate": 30, "confidence-ks": 30, "prediction-chi2": 30, "prediction-psi": 50}


def test_detectors_lists_every_registered_detector(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["monitor", "detectors"]) == 0
    out = capsys.readouterr()
    available = set(available_detectors())

    def line(name: str) -> str:
        cls = DETECTORS[name]
        note = "" if name in available else "  (needs: " + ", ".join(f"lmforge[{e}]" for _, e in cls.requires) + ")"
        return f"{name:<18} {cls.needs:<8} {cls.description}{note}"

    assert out.out.splitlines() == [line(n) for n in NAMES]
    assert {n: DETECTORS[n].needs for n in NAMES} == {
        **dict.fromkeys(TEXT_DETECTORS, "texts"), **dict.fromkeys(MIN_SAMPLES, "outputs")}
    assert out.out.splitlines()[3] == (
        "oov-rate           texts    out-of-vocabulary rate (reference vocabulary; word and CJK-character tokens)")
    assert out.err == ""


@pytest.fixture(scope="module")
def reference_run(trained_full: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return copy_run(trained_full, tmp_path_factory.mktemp("cli-monitor") / "run").root


@pytest.mark.slow
def test_reference_fits_saves_and_says_what_it_skipped(
    reference_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out_file = tmp_path / "reference.json"
    assert main(["monitor", "reference", str(reference_run), "--output", str(out_file), "--allow-unsigned"]) == 0
    out = capsys.readouterr()
    n_val = len(read_split(reference_run, "val"))
    assert n_val == 8
    assert out.out.splitlines() == [
        f"fitted {', '.join(TEXT_DETECTORS)}",
        *(f"  skipped {name}: The reference has {n_val} examples; the {name} detector needs at least {n} "
          "(min_samples)." for name, n in MIN_SAMPLES.items()),
        f"wrote {out_file}",
    ]
    saved = ReferenceState.load(out_file)
    assert sorted(saved.detectors) == TEXT_DETECTORS and sorted(saved.skipped) == sorted(MIN_SAMPLES)
    n_train = len(read_split(reference_run, "train"))
    assert (saved.classes, saved.meta["n_texts"], saved.meta["n_outputs"]) == (
        ["negative", "positive"], n_train + n_val, n_val)
    # The file holds what the library fits on the same run (only the creation time differs).
    doc = json.loads(out_file.read_text(encoding="utf-8"))
    expected = fit_reference(reference_run).to_json()
    for d in (doc, expected):
        d["meta"].pop("created")
    assert doc == expected


@pytest.mark.slow
def test_reference_fits_only_the_named_detectors(
    reference_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out_file = tmp_path / "reference.json"
    argv = ["monitor", "reference", str(reference_run), "--output", str(out_file), "--allow-unsigned",
            "--detectors", "oov-rate,prediction-psi"]
    assert main(argv) == 0
    assert capsys.readouterr().out.splitlines() == [
        "fitted oov-rate",
        "  skipped prediction-psi: The reference has 8 examples; the prediction-psi detector needs at least 50 "
        "(min_samples).",
        f"wrote {out_file}",
    ]
    saved = ReferenceState.load(out_file)
    assert (sorted(saved.detectors), sorted(saved.skipped)) == (["oov-rate"], ["prediction-psi"])


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--detectors", "nope"], "error: Unknown drift detector 'nope'. Available: " + ", ".join(NAMES) + ".\n"),
        (["--detectors", " , "], "error: --detectors needs at least one detector name, got ' , '.\n"),
        (["--max-reference", "0"], "error: --max-reference must be at least 1, got 0.\n"),
    ],
)
def test_reference_user_errors_exit_2_and_write_nothing(
    extra: list[str], message: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out_file = tmp_path / "reference.json"
    # Checked before the run is opened: no run is needed to get these messages.
    argv = ["monitor", "reference", str(tmp_path / "no-run"), "--output", str(out_file), "--allow-unsigned", *extra]
    assert main(argv) == 2
    out = capsys.readouterr()
    assert (out.out, out.err) == ("", message)
    assert not out_file.exists()
