"""`lmforge serve --backend ray`: the same API, the model in a Ray Serve replica on a local Ray instance."""

from __future__ import annotations

from pathlib import Path

import pytest
from tests._runs import copy_run
from tests._serve import create_keys, serve_process

pytest.importorskip("ray", reason="the ray extra is not installed (pip install 'lmforge[ray]')")
pytest.importorskip("ray.serve", reason="the ray extra is not installed (pip install 'lmforge[ray]')")

# Ray owns one CPU; the replica reserves none of it so the Serve controller can always be scheduled.
CONFIG = {
    "ray_num_cpus": 1,
    "ray_replica_cpus": 0,
    "registry_poll_s": 0,
    "drain_s": 0.5,
    "batching": {"threads": 1},
}


def test_ray_backend_round_trip(trained_full: Path, tmp_path: Path) -> None:
    from lmforge.client import Client
    from lmforge.predict import load_predictor

    run = copy_run(trained_full, tmp_path / "sentiment").root
    tokens = create_keys(tmp_path / "state")
    texts = ["great flight, thank you", "lost my bag again, terrible", "on time and comfy seats"]
    with serve_process(
        tmp_path,
        run,
        "--backend",
        "ray",
        "--replicas",
        "1",
        "--allow-unsigned",
        "--state",
        str(tmp_path / "state"),
        config=CONFIG,
        tokens=tokens,
    ) as srv:
        with Client(srv.url, tokens["admin"], timeout=120) as client:
            preds = client.predict(texts)
            expected = load_predictor(run).predict(texts)
            assert [p["label"] for p in preds] == [e["label"] for e in expected]
            for p, e in zip(preds, expected, strict=True):
                assert p["score"] == pytest.approx(e["score"], abs=1e-4)
            batch = [client.predict([f"flight {i} delayed again"]) for i in range(5)]
            assert all(b[0]["model"] == "sentiment" and b[0]["version"] == 1 for b in batch)
            metrics = client.metrics()
            assert 'lmforge_batch_size_texts_count{model="sentiment"}' in metrics
        assert srv.stop() == 0
    assert "deployed lmforge-sentiment-v1" in srv.output() or "lmforge-sentiment-v1" in srv.output()
