"""Fixtures of the serving tests: a copy of the tiny trained run, a state folder with API keys,
the registry's database (SQLite and PostgreSQL), and apps run in-process (their lifespan
included) with one inference thread."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from tests._postgres import BACKENDS, fresh_postgres_database, server_url
from tests._runs import copy_run
from tests._serve import create_keys


@pytest.fixture(autouse=True)
def _hermetic(_home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOME", str(_home))
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    monkeypatch.delenv("LMFORGE_AUDIT_LOG", raising=False)
    monkeypatch.delenv("LMFORGE_PUBLIC_KEY", raising=False)
    monkeypatch.delenv("LMFORGE_API_KEY", raising=False)


@pytest.fixture(scope="module")
def serve_run(trained_full: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A private copy of the tiny run (unsigned) for one test module."""
    return copy_run(trained_full, tmp_path_factory.mktemp("serve") / "sentiment").root


@pytest.fixture(params=BACKENDS)
def registry_url(request: pytest.FixtureRequest) -> Iterator[str | None]:
    """The registry's URL: None (SQLite in the state folder, the default) or a fresh PostgreSQL database."""
    if request.param == "sqlite":
        yield None
    else:
        with fresh_postgres_database(server_url()) as url:
            yield url


def settings_for(state: Path, run: Path | None = None, **overrides: Any) -> Any:
    """Test settings: the run served unsigned, one inference thread, no registry polling."""
    from lmforge.serve import settings_from_dict

    data: dict[str, Any] = {
        "state_dir": str(state),
        "allow_unsigned": True,
        "registry_poll_s": 0,
        "batching": {"threads": 1},
    }
    if run is not None:
        data["source"] = str(run)
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(data.get(key), dict):
            data[key] = {**data[key], **value}
        else:
            data[key] = value
    return settings_from_dict(data)


@pytest.fixture
def make_client() -> Iterator[Any]:
    """``make_client(settings)``: a started app's TestClient (lifespan run); closed at teardown."""
    from fastapi.testclient import TestClient

    from lmforge.serve import create_app

    opened: list[Any] = []

    def make(settings: Any) -> Any:
        client = TestClient(create_app(settings), raise_server_exceptions=False)
        client.__enter__()
        opened.append(client)
        return client

    yield make
    for client in reversed(opened):
        client.__exit__(None, None, None)


@pytest.fixture
def tokens(tmp_path: Path) -> dict[str, str]:
    return create_keys(tmp_path / "state")
