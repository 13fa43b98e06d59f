"""A canary PII string sent through a real `lmforge serve --monitor` never lands in clear anywhere:
not in the server's output (access log on, debug), the monitor store, the registry, nor the audit log;
neither do API keys."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import httpx
from tests._runs import copy_run
from tests._serve import create_keys, serve_process

# Each is a valid entity for its recognizer: an email, a Chinese mobile number, a Chinese resident
# ID with a correct MOD 11-2 check digit, and a Luhn-valid card number.
CANARIES = {
    "EMAIL": "zed.canary.7731@example.org",
    "PHONE": "13812345678",
    "CN_ID": "11010519491231002X",
    "BANK_CARD": "4111111111111111",
}


def _all_bytes(folder: Path) -> dict[Path, bytes]:
    return {p: p.read_bytes() for p in folder.rglob("*") if p.is_file()}


def test_pii_canary_never_stored_or_logged_in_clear(trained_full: Path, tmp_path: Path) -> None:
    run = copy_run(trained_full, tmp_path / "sentiment").root
    state = tmp_path / "state"
    tokens = create_keys(state)
    config = {"batching": {"threads": 1}, "registry_poll_s": 0, "drain_s": 0.5,
              "monitor": {"flush_interval_s": 0.2}}
    text = (f"lost my bag, terrible. mail me at {CANARIES['EMAIL']} or call {CANARIES['PHONE']}, "
            f"id {CANARIES['CN_ID']}, card {CANARIES['BANK_CARD']}")
    auth = {"Authorization": f"Bearer {tokens['predict']}"}
    with serve_process(tmp_path, run, "--allow-unsigned", "--state", str(state), "--monitor", "--access-log",
                       config=config, tokens=tokens) as server:
        r = httpx.post(f"{server.url}/v1/predict", json={"texts": [text, "great flight"]}, headers=auth, timeout=60)
        assert r.status_code == 200, r.text
        prediction_id = r.json()["predictions"][0]["prediction_id"]
        r = httpx.post(f"{server.url}/v1/feedback", json={"prediction_id": prediction_id, "label": "negative"},
                       headers=auth, timeout=30)
        assert r.status_code == 200, r.text
        # Error paths must not echo the text either: too long, wrong key, malformed body.
        r = httpx.post(f"{server.url}/v1/predict", json={"texts": [text * 500]}, headers=auth, timeout=30)
        assert r.status_code == 422 and CANARIES["EMAIL"] not in r.text
        r = httpx.post(f"{server.url}/v1/predict", json={"texts": [text]},
                       headers={"Authorization": "Bearer wrong-" + tokens["predict"]}, timeout=30)
        assert r.status_code == 401
        r = httpx.post(f"{server.url}/v1/predict", content=b'{"texts": ["' + text.encode() + b'"', headers=auth,
                       timeout=30)
        assert 400 <= r.status_code < 500 and CANARIES["PHONE"] not in r.text
        assert server.stop() == 0
        output = server.output()

    # The monitor store holds the prediction, redacted: the entity types are there, the values are not.
    db = state / "monitor.db"
    assert db.is_file()
    with sqlite3.connect(db) as conn:
        stored = [row[0] for row in conn.execute("SELECT text FROM predictions")]
        feedback = conn.execute("SELECT label FROM feedback WHERE prediction_id = ?", (prediction_id,)).fetchall()
    assert feedback == [("negative",)]
    redacted = next(t for t in stored if t and "terrible" in t)
    for kind in ("[EMAIL]", "[PHONE]", "[CN_ID]", "[BANK_CARD]"):
        assert kind in redacted, redacted

    # Byte-level scan of everything the server wrote: state folder (SQLite files incl. WAL,
    # registry, audit log) and its whole output.
    written = _all_bytes(state)
    assert any(p.name == "audit.jsonl" for p in written) or "audit" not in output  # audit may be empty here
    haystacks = {str(p): data for p, data in written.items()}
    haystacks["server output"] = output.encode()
    assert "POST /v1/predict" in output, output[-2000:]  # the access log was on, and is in the scan
    for name, data in haystacks.items():
        for kind, value in CANARIES.items():
            assert value.encode() not in data, f"{kind} canary in clear in {name}"
        for role, token in tokens.items():
            assert token.encode() not in data, f"{role} API key in clear in {name}"
