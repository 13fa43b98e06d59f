"""`lmforge run` end to end through the real CLI on a ~200-example slice, then `predict`."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from tests.conftest import REPO, cli_env

pytestmark = pytest.mark.slow

LMFORGE = [sys.executable, "-m", "lmforge.cli.__main__"]


def lmforge(tmp_path: Path, *args: str, timeout: int = 600) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*LMFORGE, *args], cwd=REPO, env=cli_env(tmp_path), capture_output=True,
                          text=True, timeout=timeout, check=False)


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tmp = tmp_path_factory.mktemp("e2e")
    out = tmp / "run"
    proc = lmforge(tmp, "run", "recipes/quick.yaml", "--out", str(out), "--no-progress",
                   "--set", "data.max_examples=200", "--set", "train.max_steps=6", "--set", "train.eval_steps=3")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "accuracy" in proc.stdout and "report.html" in proc.stdout
    return out


def test_run_directory_file_set(trained_run: Path) -> None:
    files = {p.relative_to(trained_run).as_posix() for p in trained_run.rglob("*") if p.is_file()}
    expected = {
        "manifest.json", "spec.yaml", "MODEL_CARD.md",
        "data/train.jsonl", "data/val.jsonl", "data/test.jsonl", "data/labels.json", "data/data_report.json",
        "data/class_balance.png", "data/text_length.png",
        "model/model.safetensors", "model/config.json", "model/tokenizer.json", "model/labels.json",
        "model/lmforge_model.json",
        "eval/metrics.json", "eval/confusion.png", "eval/calibration.png", "eval/errors.jsonl", "eval/report.html",
        "logs/train.log", "signature.json",
    }
    assert expected <= files, expected - files
    assert not any(part.startswith(".") for f in files for part in Path(f).parts), "temporary folders left"
    assert not any(f.endswith((".bin", ".pt", ".pth", ".pkl", ".pickle")) for f in files)


def test_metrics_and_manifest_contract(trained_run: Path) -> None:
    metrics = json.loads((trained_run / "eval" / "metrics.json").read_text(encoding="utf-8"))
    assert {"accuracy", "macro_f1", "per_class", "n_test"} <= set(metrics)
    assert set(metrics["per_class"]) == {"negative", "neutral", "positive"}
    test_rows = [json.loads(line) for line in (trained_run / "data" / "test.jsonl").read_text(encoding="utf-8").splitlines()]
    assert metrics["n_test"] == len(test_rows)
    # The accuracy recomputed here: the saved model on the test split, at the evaluate stage's batch size.
    from lmforge.config import spec_from_dict
    from lmforge.predict import load_predictor
    from lmforge.rundir import RunDir

    predictor = load_predictor(RunDir(trained_run), "fp32")
    proba = predictor.predict_proba([r["text"] for r in test_rows], batch_size=spec_from_dict({}).evaluate.batch_size)
    predicted = [predictor.labels[i] for i in proba.argmax(axis=1)]
    assert metrics["accuracy"] == sum(p == r["label"] for p, r in zip(predicted, test_rows, strict=True)) / len(test_rows)

    manifest = json.loads((trained_run / "manifest.json").read_text(encoding="utf-8"))
    assert manifest["spec"]["name"] == "quick"
    assert manifest["spec"]["data"]["max_examples"] == 200
    assert manifest["spec"]["train"]["max_steps"] == 6
    assert {"torch", "transformers", "lmforge", "python"} <= set(manifest["versions"])
    assert len(manifest["data"]["fingerprint"]) == 64
    assert manifest["metrics"]["accuracy"] == metrics["accuracy"]
    assert manifest["train"]["steps"] == 6
    import hashlib

    for rel, digest in manifest["files"].items():
        assert hashlib.sha256((trained_run / rel).read_bytes()).hexdigest() == digest, rel
    assert "model/model.safetensors" in manifest["files"] and "eval/report.html" in manifest["files"]


def test_predict_text_and_file(trained_run: Path, tmp_path: Path) -> None:
    # The run was signed with the key `lmforge run` created under its HOME: predict with the same HOME.
    home = trained_run.parent
    proc = lmforge(home, "predict", str(trained_run), "--text", "@united lost my bag", "--text", "thanks @JetBlue!")
    assert proc.returncode == 0, proc.stderr
    preds = json.loads(proc.stdout)
    assert [p["text"] for p in preds] == ["@united lost my bag", "thanks @JetBlue!"]
    for p in preds:
        assert p["label"] in {"negative", "neutral", "positive"}
        assert abs(sum(p["scores"].values()) - 1.0) < 1e-4
        assert p["score"] == max(p["scores"].values())

    src = tmp_path / "in.jsonl"
    src.write_text("".join(json.dumps({"id": i, "text": f"flight {i} was fine"}) + "\n" for i in range(70)),
                   encoding="utf-8")
    out = tmp_path / "out.jsonl"
    proc = lmforge(home, "predict", str(trained_run), "--input", str(src), "--output", str(out),
                   "--batch-size", "32")
    assert proc.returncode == 0, proc.stderr
    rows = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    assert [r["id"] for r in rows] == list(range(70))
    assert all(r["prediction"]["label"] in {"negative", "neutral", "positive"} for r in rows)


def test_stages_run_alone_and_evaluate_is_repeatable(trained_run: Path, tmp_path: Path) -> None:
    before = json.loads((trained_run / "eval" / "metrics.json").read_text(encoding="utf-8"))
    proc = lmforge(trained_run.parent, "evaluate", str(trained_run))
    assert proc.returncode == 0, proc.stderr
    after = json.loads((trained_run / "eval" / "metrics.json").read_text(encoding="utf-8"))
    assert after["accuracy"] == before["accuracy"] and after["n_test"] == before["n_test"]


def test_predict_refuses_tampered_and_unsigned_runs(trained_run: Path, tmp_path: Path) -> None:
    import shutil

    home = trained_run.parent
    signature = json.loads((trained_run / "signature.json").read_text(encoding="utf-8"))
    assert signature["algorithm"] == "ed25519"
    assert (home / "home" / ".config" / "lmforge" / "signing.key.pub").is_file()

    tampered = tmp_path / "tampered"
    shutil.copytree(trained_run, tampered)
    with (tampered / "model" / "labels.json").open("a", encoding="utf-8") as fh:
        fh.write(" ")
    proc = lmforge(home, "predict", str(tampered), "--text", "hi")
    assert proc.returncode == 2 and "tampered file: model/labels.json" in proc.stderr, proc.stderr
    proc = lmforge(home, "predict", str(tampered), "--allow-unsigned", "--text", "hi")
    assert proc.returncode == 2 and "tampered file: model/labels.json" in proc.stderr, proc.stderr

    unsigned = tmp_path / "unsigned"
    shutil.copytree(trained_run, unsigned)
    (unsigned / "signature.json").unlink()
    proc = lmforge(home, "predict", str(unsigned), "--text", "hi")
    assert proc.returncode == 2 and "unsigned" in proc.stderr and "--allow-unsigned" in proc.stderr
    proc = lmforge(home, "predict", str(unsigned), "--allow-unsigned", "--text", "hi")
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)[0]["label"] in {"negative", "neutral", "positive"}

    # Another user's key does not vouch for this run.
    other = tmp_path / "other"
    proc = lmforge(other, "predict", str(trained_run), "--text", "hi")
    assert proc.returncode == 2 and "no public key" in proc.stderr, proc.stderr
