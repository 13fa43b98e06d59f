"""The registry and the key store on real SQLite and PostgreSQL databases, through the library and the CLI.

``registry_url`` (tests/unit/serve/conftest.py) runs each test on both: None is the default SQLite
file in the state folder, else a fresh PostgreSQL database.
"""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest
from tests._postgres import postgres_rows_text
from tests._runs import copy_run

from lmforge.cli.__main__ import main
from lmforge.guard import AuditLog, IntegrityError, generate_signing_key, sign_run
from lmforge.serve import ServeSettings, open_stores
from lmforge.serve._admin import create_key, revoke_key
from lmforge.serve._errors import ConflictError, NotFoundError, ServeError
from lmforge.serve._keys import key_id_of, token_matches


@pytest.fixture
def settings(tmp_path: Path, registry_url: str | None) -> ServeSettings:
    return ServeSettings(state_dir=str(tmp_path / "state"), registry_url=registry_url)


def stored_text(settings: ServeSettings) -> str:
    """Everything the registry database holds: SQLite's dump, or every PostgreSQL row as text."""
    if settings.registry_url is None:
        return "\n".join(sqlite3.connect(Path(settings.state_dir) / "registry.db").iterdump())
    return postgres_rows_text(settings.registry_url)


def test_unsigned_run_is_refused_unless_allowed(settings: ServeSettings, serve_run: Path) -> None:
    with open_stores(settings) as stores:
        with pytest.raises(IntegrityError, match="unsigned"):
            stores.registry.register("sentiment", serve_run, actor="t")
        info = stores.registry.register("sentiment", serve_run, allow_unsigned=True, actor="t")
    assert (info.version, info.variant, info.signed, info.status) == (1, "fp32", False, "registered")
    assert info.labels == ["negative", "positive"]


def test_signed_run_verifies_and_tampering_is_refused(
    settings: ServeSettings, serve_run: Path, tmp_path: Path
) -> None:
    run = copy_run(serve_run, tmp_path / "signed")
    key = tmp_path / "keys" / "signing.key"
    key_id = generate_signing_key(key)
    sign_run(run, key)
    with open_stores(settings) as stores:
        info = stores.registry.register("sentiment", run.root, public_key=str(key) + ".pub", actor="t")
        assert info.signed and info.key_id == key_id
        (run.model_dir / "labels.json").write_text('["tampered"]', encoding="utf-8")
        for allow in (False, True):  # allowing unsigned runs never allows a tampered one
            with pytest.raises(IntegrityError, match="tampered file: model/labels.json"):
                stores.registry.register(
                    "sentiment", run.root, public_key=str(key) + ".pub", allow_unsigned=allow, actor="t"
                )


def test_serving_a_registered_run_reuses_its_version_and_still_refuses_it_tampered(
    serve_run: Path, tmp_path: Path, registry_url: str | None
) -> None:
    from tests.unit.serve.conftest import settings_for

    from lmforge.serve._source import ensure_source

    run = copy_run(serve_run, tmp_path / "served").root
    settings = settings_for(tmp_path / "state", run, registry_url=registry_url)
    with open_stores(settings) as stores:
        name = ensure_source(settings, stores.registry, actor="t")
        assert ensure_source(settings, stores.registry, actor="t") == name  # a restart: the same version
        assert [v.version for v in stores.registry.list_versions(name)] == [1]
        (run / "model" / "labels.json").write_text('["tampered"]', encoding="utf-8")
        with pytest.raises(IntegrityError, match="tampered file: model/labels.json"):
            ensure_source(settings, stores.registry, actor="t")


def test_activate_canary_rollback_and_the_audit_trail(settings: ServeSettings, serve_run: Path) -> None:
    with open_stores(settings) as stores:
        reg = stores.registry
        for _ in range(3):
            reg.register("sentiment", serve_run, allow_unsigned=True, actor="ana")
        with pytest.raises(ConflictError, match="no active version"):
            reg.set_canary("sentiment", 2, 10, actor="ana")
        reg.activate("sentiment", 1, actor="ana")
        with pytest.raises(ConflictError, match="already active"):
            reg.set_canary("sentiment", 1, 10, actor="ana")
        with pytest.raises(ServeError, match="between 0 and 100"):
            reg.set_canary("sentiment", 2, 150, actor="ana")
        with pytest.raises(NotFoundError, match="no version 9. Versions: 1, 2, 3"):
            reg.activate("sentiment", 9, actor="ana")
        with pytest.raises(NotFoundError, match="Registered: sentiment"):
            reg.get_model("nope")

        info = reg.set_canary("sentiment", 2, 25, actor="ana")
        assert (info.active_version, info.canary_version, info.canary_percent) == (1, 2, 25.0)
        info, done = reg.rollback("sentiment", actor="ana")  # with a canary: stop it
        assert done["action"] == "canary_aborted" and (info.active_version, info.canary_version) == (1, None)
        assert reg.get_version("sentiment", 2).status == "rolled_back"

        reg.activate("sentiment", 2, actor="ana")
        reg.activate("sentiment", 3, actor="ana")
        assert reg.rollback_target("sentiment") == 2
        _, done = reg.rollback("sentiment", actor="ana")
        assert (done["from_version"], done["to_version"]) == (3, 2)
        _, done = reg.rollback("sentiment", actor="ana")  # again: back past 3 (rolled back) to 1
        assert (done["from_version"], done["to_version"]) == (2, 1)
        with pytest.raises(ConflictError, match="no earlier version"):
            reg.rollback("sentiment", actor="ana")
        statuses = {v.version: v.status for v in reg.list_versions("sentiment")}
        assert statuses == {1: "active", 2: "rolled_back", 3: "rolled_back"}
        assert [e["action"] for e in reg.history("sentiment")][-3:] == ["activate", "rollback", "rollback"]

    log = AuditLog(settings.audit_log_path)
    log.verify()
    actions = [r["action"] for r in log.records()]
    assert actions.count("model.register") == 3 and "model.canary" in actions
    assert actions.count("model.rollback") == 3 and actions.count("model.activate") == 3
    assert {r["actor"] for r in log.records()} == {"ana"}


def test_keys_are_stored_hashed_and_revocable(settings: ServeSettings) -> None:
    with open_stores(settings) as stores:
        token, key = create_key(stores, "dashboard", "predict", actor="ana", rate_per_s=5)
        assert key_id_of(token) == key.key_id and len(token) > 50
        found = stores.keys.lookup(key.key_id)
        assert (
            found is not None and token_matches(token, found[1]) and not token_matches(token + "x", found[1])
        )
        with pytest.raises(Exception, match="Unknown role 'root'"):
            stores.keys.create("x", "root", actor="ana")
        revoked = revoke_key(stores, key.key_id, actor="ana")
        assert not revoked.active
        with pytest.raises(Exception, match="No API key with id 'ffffffffffff'"):
            stores.keys.revoke("ffffffffffff")
    dumped = stored_text(settings)
    assert key.key_id in dumped  # the dump does show what is stored
    assert token not in dumped and token.split("_", 2)[2] not in dumped  # only the digest is stored (the secret may hold "_")
    audit = Path(settings.state_dir) / "audit.jsonl"
    text = audit.read_text(encoding="utf-8")
    assert '"key.create"' in text and '"key.revoke"' in text and token not in text


def test_cli_keys_and_registry(
    tmp_path: Path, serve_run: Path, registry_url: str | None, capsys: pytest.CaptureFixture[str]
) -> None:
    # Every command names the same database: the state folder's SQLite file, or the PostgreSQL URL.
    db = ["--state", str(tmp_path / "state")]
    if registry_url is not None:
        db += ["--registry-url", registry_url]
    assert main(["keys", "create", "ops", "--role", "admin", *db]) == 0
    out = capsys.readouterr()
    token = out.out.strip()
    assert main(["keys", "list", *db]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert [k["name"] for k in listed] == ["ops"] and token not in json.dumps(listed)
    key_id = listed[0]["key_id"]
    assert key_id_of(token) == key_id  # the printed token is the listed key's
    assert out.err.splitlines()[-1] == f"created API key {key_id} ('ops', role admin); its token, shown only this once:"

    assert main(["registry", "register", "sentiment", str(serve_run), *db]) == 2
    assert "unsigned" in capsys.readouterr().err
    register = ["registry", "register", "sentiment", str(serve_run), *db, "--allow-unsigned"]
    assert main([*register, "--activate"]) == 0
    assert "version 1" in capsys.readouterr().out
    assert main(register) == 0
    assert main(["registry", "canary", "sentiment", "2", "10", *db]) == 0
    assert "10 % of traffic to version 2" in capsys.readouterr().out.splitlines()[-1]
    assert main(["registry", "activate", "sentiment", "2", *db]) == 0
    assert main(["registry", "rollback", "sentiment", *db]) == 0
    assert "version 2 -> 1" in capsys.readouterr().out.splitlines()[-1]
    assert main(["registry", "list", *db]) == 0
    models = json.loads(capsys.readouterr().out)
    assert models[0]["name"] == "sentiment" and models[0]["active_version"] == 1
    assert main(["registry", "activate", "nope", "1", *db]) == 2
    assert "No model named 'nope'" in capsys.readouterr().err
    assert main(["keys", "revoke", listed[0]["key_id"], *db]) == 0
