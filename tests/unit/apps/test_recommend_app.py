"""`lmforge recommend train | predict | similar` on a tiny task with a tiny encoder, end to end."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from tests._recommend import build_tiny_encoder, write_spec, write_task

from lmforge.apps.recommend import evaluate_models, fit_models, prepare_data, read_prepared
from lmforge.cli.__main__ import main
from lmforge.config import load_spec
from lmforge.errors import RunDirError

MODELS = {"popularity", "itemknn", "ease", "tfidf", "text", "blend"}


@pytest.fixture(scope="module")
def task(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("rec")
    write_task(root)
    return root, build_tiny_encoder(root / "encoder")


@pytest.fixture(scope="module")
def trained(task: tuple[Path, Path]) -> Path:
    root, encoder = task
    out = root / "run"
    assert main(["recommend", "train", str(write_spec(root, encoder)), "--out", str(out)]) == 0
    return out


def _pairs(path: Path) -> set[tuple[str, str]]:
    return {(r["user"], r["item"]) for r in map(json.loads, path.read_text(encoding="utf-8").splitlines())}


def test_train_measures_every_model_side_by_side(trained: Path) -> None:
    metrics = json.loads((trained / "eval" / "rec_metrics.json").read_text(encoding="utf-8"))
    assert metrics["protocol"] == "ratio"
    assert set(metrics["test"]) == set(metrics["val"]) == MODELS
    for scores in metrics["test"].values():
        assert {"NDCG@10", "HR@10", "Recall@20", "users"} <= set(scores)
        assert 0.0 <= scores["NDCG@10"] <= 1.0
        assert scores["users"] == metrics["data"]["split"]["test_users"] == 24
    assert sum(metrics["blend"]["weights"].values()) == pytest.approx(1.0)
    assert set(metrics["blend"]["weights"]) == {"text", "ease", "popularity"}
    assert metrics["selected"] == max(metrics["val"], key=lambda n: (metrics["val"][n]["NDCG@10"], n == "blend"))
    comp = metrics["comparison"]
    best = max(("popularity", "itemknn", "ease"), key=lambda n: metrics["test"][n]["NDCG@10"])
    assert comp["best_collaborative"] == best
    assert comp["blend_beats_best_collaborative"] == (metrics["test"]["blend"]["NDCG@10"]
                                                      > metrics["test"][best]["NDCG@10"])
    assert metrics["text_model"]["steps"] == 6
    report = (trained / "eval" / "report.html").read_text(encoding="utf-8")
    assert all(f"<td>{name}</td>" in report for name in MODELS)
    for name in ("item_embeddings", "user_embeddings", "top_items"):
        assert (trained / "recommender" / f"{name}.safetensors").is_file()
    assert (trained / "model" / "model.safetensors").is_file()


def test_predict_all_never_recommends_a_training_item(trained: Path, tmp_path: Path) -> None:
    out = tmp_path / "recs.jsonl"
    assert main(["recommend", "predict", str(trained), "--all", "--k", "5", "--output", str(out)]) == 0
    rows = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    seen = _pairs(trained / "data" / "train.jsonl") | _pairs(trained / "data" / "val.jsonl")
    assert [r["user"] for r in rows] == [f"u{u:02d}" for u in range(24)]
    for row in rows:
        assert set(row) == {"user", "items"}
        assert len(row["items"]) == 5 == len(set(row["items"]))
        assert all(item.startswith("m") and len(item) == 4 for item in row["items"])  # ids verbatim
        assert not {(row["user"], i) for i in row["items"]} & seen


def test_predict_names_unknown_users_and_answers_the_others(trained: Path, tmp_path: Path,
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    users = tmp_path / "users.txt"
    users.write_text("u03\nnobody\n\nu07\n", encoding="utf-8")
    out = tmp_path / "recs.jsonl"
    assert main(["recommend", "predict", str(trained), "--users", str(users), "--k", "3", "--output", str(out)]) == 2
    rows = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    assert [r["user"] for r in rows] == ["u03", "u07"] and all(len(r["items"]) == 3 for r in rows)
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: unknown user 'nobody': not in the training data")
    assert main(["recommend", "predict", str(trained), "--all", "--k", "21"]) == 2
    assert "--k must be in 1..20" in capsys.readouterr().err
    assert main(["recommend", "predict", str(tmp_path), "--all"]) == 2
    assert "is not a trained recommender" in capsys.readouterr().err


def test_similar_by_item_and_by_text(trained: Path, capsys: pytest.CaptureFixture[str]) -> None:
    capsys.readouterr()
    assert main(["recommend", "similar", str(trained), "--item", "m000", "--k", "4"]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert len(rows) == 4 and "m000" not in [r["item"] for r in rows]
    assert [r["score"] for r in rows] == sorted((r["score"] for r in rows), reverse=True)
    assert main(["recommend", "similar", str(trained), "--text", "space robot", "--k", "36"]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert len(rows) == 36  # every item has a text
    assert main(["recommend", "similar", str(trained), "--item", "m999"]) == 2
    assert "Unknown item 'm999'" in capsys.readouterr().err


def test_cold_items_get_text_scores_and_the_test_split_is_read_only_to_evaluate(task: tuple[Path, Path],
                                                                                tmp_path: Path) -> None:
    root, encoder = task
    spec = load_spec(write_spec(root, encoder, split="cold"))
    rec = prepare_data(spec, tmp_path / "cold")
    test_file = rec.split("test")
    hidden = tmp_path / "hidden-test.jsonl"
    shutil.move(test_file, hidden)  # fitting (the blend weights included) must not need it
    prepared = read_prepared(rec.root)
    fitted = fit_models(spec, prepared)
    with pytest.raises(RunDirError, match="test.jsonl is missing"):
        evaluate_models(spec, prepared, fitted)
    shutil.move(hidden, test_file)
    cands = prepared.candidates("test")
    users = np.arange(prepared.n_users)
    assert not fitted.models["ease"].score(users)[:, cands].any()  # no interactions: no collaborative score
    text = fitted.models["text"].score(users)[:, cands]
    assert (text.std(axis=1) > 0).all()  # but every user ranks the new items by their text
    metrics = evaluate_models(spec, prepared, fitted)
    assert metrics["test"]["text"]["users"] > 0
    assert metrics["test"]["ease"]["users"] == metrics["test"]["text"]["users"]


def test_split_none_without_item_texts_trains_collaborative_models_only(task: tuple[Path, Path], tmp_path: Path,
                                                                        capsys: pytest.CaptureFixture[str]) -> None:
    root, encoder = task
    spec = write_spec(root, encoder, split="none", items={})
    out = tmp_path / "none"
    assert main(["recommend", "train", str(spec), "--out", str(out)]) == 0
    metrics = json.loads((out / "eval" / "rec_metrics.json").read_text(encoding="utf-8"))
    assert metrics["test"] is None and metrics["comparison_on"] == "val"
    assert set(metrics["val"]) == {"popularity", "itemknn", "ease", "blend"}
    assert (out / "data" / "test.jsonl").read_text(encoding="utf-8") == ""
    assert not (out / "model").exists()
    assert main(["recommend", "predict", str(out), "--all", "--k", "2"]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.startswith("{")]
    assert len(rows) == 24 and all(len(r["items"]) == 2 for r in rows)
    assert main(["recommend", "similar", str(out), "--item", "m000"]) == 2
    assert "has no text model" in capsys.readouterr().err
