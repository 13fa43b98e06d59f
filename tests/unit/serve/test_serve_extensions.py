"""Extensions: an application's routes mounted behind the server's keys, admission, metrics and lifespan."""

# No `from __future__ import annotations` here: FastAPI reads the route signature at runtime.

from pathlib import Path
from typing import Annotated, Any

import pytest
from tests._serve import create_keys
from tests.unit.serve.conftest import settings_for


class Echo:
    """A minimal extension: ``POST /v1/echo`` behind the predict key, one admission slot per call."""

    name = "echo"

    def __init__(self) -> None:
        self.host: Any = None
        self.is_ready = True
        self.events: list[str] = []

    def router(self, context: Any) -> Any:
        import prometheus_client as pc
        from fastapi import APIRouter, Depends, Request

        from lmforge.serve import admitted

        Key = Annotated[Any, Depends(context.require_predict)]
        echoes = pc.Counter("echo_calls_total", "Echo calls.", registry=context.metrics.registry)
        router = APIRouter()

        @router.post("/v1/echo")
        async def echo(body: dict[str, Any], request: Request, key: Key) -> Any:
            from lmforge.serve import host_of

            with admitted(request, 1):
                if body.get("nested"):
                    with admitted(request, 1):  # a second slot while the first is held
                        pass
                echoes.inc()
                return {"echo": body.get("text"), "key": key.name, "same_host": host_of(request) is self.host}

        return router

    def start(self, host: Any) -> None:
        self.events.append("start")
        self.host = host

    def ready(self) -> bool:
        return self.is_ready

    def close(self) -> None:
        self.events.append("close")


def _client(settings: Any, ext: Echo) -> Any:
    from fastapi.testclient import TestClient

    from lmforge.serve import create_app

    return TestClient(create_app(settings, [ext]), raise_server_exceptions=False)


def test_extension_routes_sit_behind_the_keys_limits_and_metrics(tmp_path: Path, serve_run: Path) -> None:
    state = tmp_path / "state"
    keys = create_keys(state)
    ext = Echo()
    settings = settings_for(state, serve_run, limits={"max_in_flight": 1})
    with _client(settings, ext) as client:
        assert ext.events == ["start"]
        assert ext.host.monitor is None and ext.host.database.dialect.name == "sqlite"
        assert client.post("/v1/echo", json={"text": "hi"}).status_code == 401
        auth = {"Authorization": f"Bearer {keys['predict']}"}
        r = client.post("/v1/echo", json={"text": "hi"}, headers=auth)
        assert r.status_code == 200
        assert r.json() == {"echo": "hi", "key": "test-predict", "same_host": True}
        busy = client.post("/v1/echo", json={"nested": True}, headers=auth)
        assert busy.status_code == 429
        assert busy.json()["error"]["code"] == "overloaded" and "Retry-After" in busy.headers
        # The slot of a refused request is released: the next call is admitted again.
        assert client.post("/v1/echo", json={"text": "again"}, headers=auth).status_code == 200
        text = client.get("/metrics", headers=auth).text
        assert "echo_calls_total 2.0" in text
        assert 'lmforge_http_requests_total{method="POST",route="/v1/echo",status="200"} 2.0' in text
        assert 'lmforge_http_requests_total{method="POST",route="/v1/echo",status="429"} 1.0' in text
        assert 'lmforge_rejected_requests_total{reason="overloaded"} 1.0' in text
        # The server's own routes are still there.
        assert client.post("/v1/predict", json={"texts": ["great"]}, headers=auth).status_code == 200
    assert ext.events == ["start", "close"]


def test_ready_only_when_every_extension_is(tmp_path: Path) -> None:
    ext = Echo()
    ext.is_ready = False
    # No run and an empty registry: a server that answers through its extension alone.
    with _client(settings_for(tmp_path / "state"), ext) as client:
        assert client.get("/readyz").status_code == 503
        ext.is_ready = True
        assert client.get("/readyz").json() == {"status": "ready"}


def test_without_extensions_an_empty_registry_is_not_ready(tmp_path: Path) -> None:
    from fastapi.testclient import TestClient

    from lmforge.serve import create_app

    with TestClient(create_app(settings_for(tmp_path / "state"))) as client:
        assert client.get("/readyz").status_code == 503


def test_extension_names_are_unique(tmp_path: Path) -> None:
    from lmforge.serve import create_app

    with pytest.raises(ValueError, match="unique"):
        create_app(settings_for(tmp_path / "state"), [Echo(), Echo()])
