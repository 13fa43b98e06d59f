"""`lmforge serve DIR` on a recommender: POST /v1/recommend (a known user, a new history, a text), its
ONNX int8 query encoder, and the scoring of new histories against what training stored."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from tests._recommend import build_tiny_encoder, write_spec, write_task
from tests._serve import create_keys
from tests.unit.serve.conftest import settings_for

from lmforge.apps import serving_for
from lmforge.apps.recommend import (
    OnlineRecommender,
    RecommendError,
    RecommendExtension,
    by_user,
    fit_models,
    read_prepared,
    recommend,
    standardize,
    store_online,
    top_k,
)
from lmforge.cli.__main__ import main
from lmforge.config import load_spec
from lmforge.errors import RunDirError
from lmforge.guard import IntegrityError
from lmforge.predict import OnnxEmbedder, TextEmbedder
from lmforge.serve import ExtensionHost

PLANTED = "m900"
"""An item no one interacted with, whose text is the one word no other item uses."""


@pytest.fixture(scope="module")
def recdir(tmp_path_factory: pytest.TempPathFactory, _home: Path) -> Path:
    root = tmp_path_factory.mktemp("recserve")
    _, items = write_task(root)
    with items.open("a", encoding="utf-8") as fh:
        fh.write(f"{PLANTED},no no,no\n")
    encoder = build_tiny_encoder(root / "encoder")
    out = root / "rec"
    assert main(["recommend", "train", str(write_spec(root, encoder)), "--out", str(out)]) == 0  # signs it
    return out


def _seen(recdir: Path, user: str) -> list[str]:
    """The user's training positives (train + val), oldest first."""
    rows = [json.loads(line) for name in ("train", "val")
            for line in (recdir / "data" / f"{name}.jsonl").read_text(encoding="utf-8").splitlines()]
    return [r["item"] for r in sorted(rows, key=lambda r: r["n"]) if r["user"] == user]


def test_the_query_encoder_is_onnx_int8_and_agrees_with_the_torch_encoder(recdir: Path) -> None:
    folder = recdir / "recommender" / "encoder-int8"
    meta = json.loads((recdir / "recommender" / "recommender.json").read_text(encoding="utf-8"))
    assert meta["online"]["encoder"]["quantization"]["weights"] == "int8 per channel"
    texts = ["comedy. item 7 war", "space robot", "no no", "horror | drama. item 3 school"]
    onnx = OnnxEmbedder(folder).encode(texts)
    torch = TextEmbedder(recdir / "model", max_length=32).encode(texts)
    cosine = (onnx * torch).sum(axis=1)
    assert cosine.min() > 0.99, cosine
    assert np.allclose(np.linalg.norm(onnx, axis=1), 1.0, atol=1e-5)
    assert not any(p.suffix == ".onnx" and p.name.startswith(".") for p in folder.iterdir())  # no scratch left


def test_a_known_users_history_scores_as_training_did(recdir: Path) -> None:
    # With the torch encoder the user vector is the stored one, so sending a known user's own training
    # items as a "new" history must give back exactly their stored recommendations.
    model = OnlineRecommender(recdir, embedder=TextEmbedder(recdir / "model", max_length=32))
    for user in ("u00", "u07", "u13"):
        stored = model.for_user(user, 8)
        history = _seen(recdir, user)
        fresh = model.for_history(history, 8)
        assert fresh.model == stored.model == model.selected
        assert fresh.items == stored.items
        assert np.allclose(fresh.scores, stored.scores, atol=1e-4)
        assert not set(fresh.items) & set(history)
    with pytest.raises(RecommendError, match="k must be in 1..20") as bad:
        model.for_text("space", 21)
    assert bad.value.status == 422 and bad.value.code == "k_out_of_range"


def test_a_blend_scores_a_new_history_from_its_stored_parts(recdir: Path, tmp_path: Path) -> None:
    # Refit a copy and serve its blend (text + EASE + popularity): a history must rank as the fitted
    # blend ranks the user whose training items it is.
    copy = tmp_path / "rec"
    shutil.copytree(recdir, copy)
    prepared = read_prepared(copy)
    fitted = fit_models(load_spec(copy / "spec.yaml"), prepared)
    assert all(w > 0 for w in fitted.weights.values()) and set(fitted.weights) == {"text", "ease", "popularity"}
    online = store_online(prepared.rec, "blend", fitted.weights, fitted.models, prepared.texts, 32)
    assert online["history_parts"] == ["ease", "popularity"] and online["history_missing"] == {}
    meta_path = copy / "recommender" / "recommender.json"
    meta = json.loads(meta_path.read_text(encoding="utf-8"))
    meta_path.write_text(json.dumps({**meta, "selected": "blend", "blend_weights": fitted.weights, "online": online}),
                         encoding="utf-8")
    model = OnlineRecommender(copy, embedder=TextEmbedder(copy / "model", max_length=32))
    train_u, train_i = prepared.pairs("train", "val")
    seen = by_user(train_u, train_i, prepared.n_users)
    for u in (2, 9, 17):
        history = [prepared.item_ids[i] for i in seen[u]]
        scores = np.asarray(fitted.models["blend"].score(np.array([u])), dtype=np.float64)
        expected = [prepared.item_ids[i] for i in top_k(scores, [seen[u]], 10)[0]]
        got = model.for_history(history, 10)
        assert got.model == "blend" and got.items == expected
        assert np.allclose(got.scores, np.sort(scores[0])[::-1][:10], atol=1e-4)
    # A catalogue too large for EASE's matrix: not stored, and a history is scored by the blend's other parts.
    online = store_online(prepared.rec, "blend", fitted.weights, fitted.models, prepared.texts, 32, max_items=5)
    assert online["history_parts"] == ["popularity"] and list(online["history_missing"]) == ["ease"]
    meta_path.write_text(json.dumps({**meta, "selected": "blend", "blend_weights": fitted.weights, "online": online}),
                         encoding="utf-8")
    model = OnlineRecommender(copy, embedder=TextEmbedder(copy / "model", max_length=32))
    u = 4
    history = [prepared.item_ids[i] for i in seen[u]]
    scores = sum(fitted.weights[n] * standardize(np.asarray(fitted.models[n].score(np.array([u])), dtype=np.float64))
                 for n in ("text", "popularity"))
    got = model.for_history(history, 10)
    assert got.model == "blend without ease"
    assert got.items == [prepared.item_ids[i] for i in top_k(np.asarray(scores), [seen[u]], 10)[0]]


def test_start_verifies_the_directory_before_loading(recdir: Path, tmp_path: Path) -> None:
    copy = tmp_path / "rec"
    shutil.copytree(recdir, copy)
    settings = settings_for(tmp_path / "state", allow_unsigned=False)
    ext = RecommendExtension(copy)
    ext.start(ExtensionHost(settings=settings, monitor=None, database=None))  # signed with this user's key
    assert ext.ready() and ext.model is not None
    top = copy / "recommender" / "top_items.safetensors"
    top.write_bytes(top.read_bytes() + b" ")
    tampered = RecommendExtension(copy)
    with pytest.raises(IntegrityError, match="tampered file: recommender/top_items.safetensors"):
        tampered.start(ExtensionHost(settings=settings, monitor=None, database=None))
    assert not tampered.ready()
    assert serving_for(str(tmp_path)) is None and serving_for(str(copy)) is not None
    (copy / "manifest.json").unlink()
    with pytest.raises(RunDirError, match="has no manifest.json, so it cannot be verified: train it again"):
        RecommendExtension(copy).start(ExtensionHost(settings=settings, monitor=None, database=None))


def test_serve_recommend_for_a_user_a_history_and_a_text(recdir: Path, tmp_path: Path) -> None:
    from fastapi.testclient import TestClient

    from lmforge.serve import create_app

    state = tmp_path / "state"
    keys = create_keys(state)
    served = serving_for(str(recdir))
    assert served is not None and served.source is None
    settings = settings_for(state, allow_unsigned=False)
    auth = {"Authorization": f"Bearer {keys['predict']}"}
    with TestClient(create_app(settings, [served.extension]), raise_server_exceptions=False) as client:
        assert client.get("/readyz").json() == {"status": "ready"}

        def ask(body: dict[str, Any], status: int = 200) -> dict[str, Any]:
            r = client.post("/v1/recommend", json=body, headers=auth)
            assert r.status_code == status, r.text
            return dict(r.json())

        assert client.post("/v1/recommend", json={"user": "u03"}).status_code == 401
        # A known user: what `lmforge recommend predict` lists.
        got = ask({"user": "u03", "k": 5})
        assert got["items"] == recommend(recdir, ["u03"], 5).rows[0]["items"]
        assert got["scores"] == sorted(got["scores"], reverse=True) and len(got["scores"]) == 5
        selected = json.loads((recdir / "recommender" / "recommender.json").read_text(encoding="utf-8"))["selected"]
        assert got["model"] == selected
        # A new user's history: never one of its own items.
        history = ["m000", "m006", "m012", "m001", "m007"]
        got = ask({"history": history, "k": 20})
        assert len(got["items"]) == 20 and not set(got["items"]) & set(history)
        assert got["model"] == selected
        # A text: the planted item, which nobody has interacted with, comes first.
        got = ask({"text": "no no no", "k": 3})
        assert got["items"][0] == PLANTED and got["model"] == "text" and len(got["items"]) == 3
        # Errors, in the JSON error body.
        err = ask({"user": "nobody", "k": 3}, 404)["error"]
        assert err["code"] == "unknown_user" and "'nobody'" in err["message"]
        err = ask({"history": ["m000", "zzz", "yyy", "zzz"], "k": 3}, 422)["error"]
        assert err["code"] == "unknown_items" and err["message"].startswith("2 items of the history are unknown")
        assert "'zzz', 'yyy'" in err["message"]
        for k in (0, 21):
            assert ask({"user": "u03", "k": k}, 422)["error"]["code"] == "k_out_of_range"
        assert ask({"text": "space", "k": 21}, 422)["error"]["code"] == "k_out_of_range"
        assert ask({"user": "u03", "text": "space"}, 422)["error"]["code"] == "validation_error"
        assert ask({"history": [], "k": 3}, 422)["error"]["code"] == "validation_error"
        metrics = client.get("/metrics", headers=auth).text
        for form in ("user", "history", "text"):
            assert f'lmforge_recommend_requests_total{{form="{form}"}} 1.0' in metrics
        assert 'lmforge_http_requests_total{method="POST",route="/v1/recommend",status="404"} 1.0' in metrics
