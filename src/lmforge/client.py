"""A small Python client of ``lmforge serve`` (httpx).

    from lmforge.client import Client

    with Client("http://127.0.0.1:8000", api_key="lmf_...") as client:
        client.predict(["@united lost my bag again"])   # [{"label", "score", "scores", ...}]
        client.feedback(prediction_id, "negative")
        client.models()

The key may also come from ``$LMFORGE_API_KEY``. Every error response becomes an
:class:`ApiError` with the server's status, code and message (and ``retry_after`` for 429/503).
Importing this module is cheap; httpx loads when a client is made.
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from typing import Any

from lmforge._extras import require
from lmforge.errors import LmforgeError

__all__ = ["API_KEY_ENV", "ApiError", "Client", "ConnectError"]

API_KEY_ENV = "LMFORGE_API_KEY"


class ApiError(LmforgeError):
    """The server answered with an error."""

    def __init__(self, status: int, code: str, message: str, retry_after: float | None = None) -> None:
        super().__init__(f"HTTP {status} {code}: {message}")
        self.status = status
        self.code = code
        self.message = message
        self.retry_after = retry_after


class ConnectError(LmforgeError):
    """The server could not be reached."""


class Client:
    """Calls the lmforge HTTP API.

    Args:
        url: base URL, e.g. ``http://127.0.0.1:8000``.
        api_key: an API key (``lmforge keys create``); default ``$LMFORGE_API_KEY``.
        timeout: seconds per request.
        retries: times a 429/503 answer is retried after its ``Retry-After`` (capped at 10 s each).
        transport: an httpx transport (e.g. ``httpx.ASGITransport(app)`` in tests).
    """

    def __init__(
        self,
        url: str,
        api_key: str | None = None,
        *,
        timeout: float = 30.0,
        retries: int = 0,
        transport: Any = None,
    ) -> None:
        httpx = require("httpx", extra="serve", purpose="The lmforge HTTP client")
        self.url = url.rstrip("/")
        self.retries = retries
        key = api_key if api_key is not None else os.environ.get(API_KEY_ENV)
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        self._http = httpx.Client(base_url=self.url, headers=headers, timeout=timeout, transport=transport)
        self._httpx = httpx

    def __repr__(self) -> str:  # never shows the key
        return f"Client({self.url!r})"

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    # -- calls -----------------------------------------------------------------------------------
    def _request(self, method: str, path: str, json: Any = None) -> Any:
        for attempt in range(self.retries + 1):
            try:
                response = self._http.request(method, path, json=json)
            except self._httpx.TransportError as exc:
                raise ConnectError(f"Cannot reach {self.url}{path}: {type(exc).__name__}: {exc}") from None
            if response.status_code < 400:
                if response.headers.get("content-type", "").startswith("application/json"):
                    return response.json()
                return response.text
            error = _error(response)
            if error.status in (429, 503) and attempt < self.retries:
                time.sleep(min(error.retry_after or 1.0, 10.0))
                continue
            raise error
        raise AssertionError("unreachable")  # pragma: no cover

    def predict(self, texts: Sequence[str], model: str | None = None) -> list[dict[str, Any]]:
        """Per text: ``label``, ``score``, ``scores``, ``model``, ``version``, ``prediction_id``."""
        body: dict[str, Any] = {"texts": list(texts)}
        if model is not None:
            body["model"] = model
        return list(self._request("POST", "/v1/predict", body)["predictions"])

    def explain(self, text: str, *, label: str | None = None, method: str = "auto", top: int | None = None,
                model: str | None = None) -> dict[str, Any]:
        """Per-word attributions of ``text`` toward ``label`` (default: the predicted one): ``label``,
        ``score``, ``method``, ``truncated``, ``tokens`` [{``token``, ``start``, ``end``, ``attribution``}]."""
        body: dict[str, Any] = {"text": text, "method": method}
        for name, value in (("label", label), ("top", top), ("model", model)):
            if value is not None:
                body[name] = value
        return dict(self._request("POST", "/v1/explain", body))

    def feedback(self, prediction_id: str, label: str, **extra: Any) -> Any:
        """Report the true label of a prediction (needs monitoring on the server)."""
        return self._request(
            "POST", "/v1/feedback", {"prediction_id": prediction_id, "label": label, **extra}
        )

    def health(self) -> dict[str, Any]:
        """``{"live": bool, "ready": bool, "models": {...}}`` from ``/healthz`` and ``/readyz``."""
        live = self._http.get("/healthz").status_code == 200
        ready = self._http.get("/readyz")
        body = ready.json() if ready.status_code == 200 else {}
        return {"live": live, "ready": ready.status_code == 200, "models": body.get("models", {})}

    def models(self) -> list[dict[str, Any]]:
        """Every model with its active and canary versions (admin key)."""
        return list(self._request("GET", "/v1/models")["models"])

    def versions(self, name: str) -> list[dict[str, Any]]:
        return list(self._request("GET", f"/v1/models/{name}/versions")["versions"])

    def register(
        self, name: str, run: str, *, variant: str | None = None, activate: bool = False
    ) -> dict[str, Any]:
        """Register a run directory (a path on the server) as a new version (admin key)."""
        return dict(
            self._request(
                "POST", f"/v1/models/{name}/versions", {"run": run, "variant": variant, "activate": activate}
            )
        )

    def activate(self, name: str, version: int) -> dict[str, Any]:
        return dict(self._request("POST", f"/v1/models/{name}/versions/{version}/activate"))

    def canary(self, name: str, version: int, percent: float) -> dict[str, Any]:
        return dict(
            self._request("POST", f"/v1/models/{name}/canary", {"version": version, "percent": percent})
        )

    def rollback(self, name: str) -> dict[str, Any]:
        return dict(self._request("POST", f"/v1/models/{name}/rollback"))

    def metrics(self) -> str:
        """The Prometheus exposition text."""
        return str(self._request("GET", "/metrics"))


def _error(response: Any) -> ApiError:
    code, message = "error", response.text[:500]
    try:
        body = response.json()["error"]
        code, message = str(body["code"]), str(body["message"])
    except (ValueError, KeyError, TypeError):
        pass
    retry = response.headers.get("retry-after")
    try:
        retry_after = float(retry) if retry is not None else None
    except ValueError:
        retry_after = None
    return ApiError(response.status_code, code, message, retry_after)
