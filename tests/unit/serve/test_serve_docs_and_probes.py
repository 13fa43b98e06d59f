"""What an anonymous caller and an offline browser get: ``/readyz`` says ready or not and nothing
more; ``/docs`` is off by default and, when on, loads its script and stylesheet from this server."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from tests._serve import create_keys
from tests.unit.serve.conftest import settings_for


def auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def test_readyz_tells_an_anonymous_caller_only_ready(serve_run: Path, tmp_path: Path, make_client: Any) -> None:
    tokens = create_keys(tmp_path / "state")
    client = make_client(settings_for(tmp_path / "state", serve_run))
    anonymous = client.get("/readyz")
    assert anonymous.status_code == 200
    assert anonymous.json() == {"status": "ready"}
    assert client.get("/readyz", headers=auth("lmf_0123456789ab_" + "A" * 43)).json() == {"status": "ready"}
    for role in ("predict", "admin"):
        known = client.get("/readyz", headers=auth(tokens[role]))
        assert known.json() == {"status": "ready", "models": {"sentiment": {"stable": 1, "canary": None}}}
    by_header = client.get("/readyz", headers={"X-API-Key": tokens["predict"]})
    assert by_header.json()["models"] == {"sentiment": {"stable": 1, "canary": None}}


def test_docs_are_off_by_default(serve_run: Path, tmp_path: Path, make_client: Any) -> None:
    client = make_client(settings_for(tmp_path / "state", serve_run))
    assert client.get("/docs").status_code == 404
    assert client.get("/docs/assets/swagger-ui-bundle.js").status_code == 404
    assert "/v1/predict" in client.get("/openapi.json").json()["paths"]


def test_docs_page_needs_no_network(serve_run: Path, tmp_path: Path, make_client: Any) -> None:
    client = make_client(settings_for(tmp_path / "state", serve_run, docs=True))
    page = client.get("/docs")
    assert page.status_code == 200
    urls = re.findall(r"""(?:src|href)=["']([^"']+)["']""", page.text) + re.findall(r"""url: ?['"]([^'"]+)['"]""", page.text)
    assert sorted(set(urls)) == ["/docs/assets/favicon-32x32.png", "/docs/assets/swagger-ui-bundle.js",
                                 "/docs/assets/swagger-ui.css", "/openapi.json"]
    assert "http://" not in page.text and "https://" not in page.text
    js = client.get("/docs/assets/swagger-ui-bundle.js")
    assert js.status_code == 200 and js.headers["content-type"].startswith("text/javascript")
    assert "SwaggerUIBundle" in js.text
    css = client.get("/docs/assets/swagger-ui.css")
    assert css.status_code == 200 and css.headers["content-type"].startswith("text/css")
    for name in ("index.html", "..%2Fpyproject.toml", "swagger-ui.js.map"):
        assert client.get(f"/docs/assets/{name}").status_code == 404
