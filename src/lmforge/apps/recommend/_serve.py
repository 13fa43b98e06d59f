"""``lmforge serve DIR`` on a recommender directory: ``POST /v1/recommend`` beside the server's routes.

:func:`serving` tells ``lmforge.apps.serving_for`` that a directory with
``recommender/recommender.json`` is this app's; the server then runs no classifier
(``Served.source`` is None) and is ready once :class:`RecommendExtension` has loaded. Its
``start`` verifies the directory with the server's policy (``guard.trust_run``: signed by the
trusted key, or only checked against its manifest with ``allow_unsigned``), then loads it
(:class:`~lmforge.apps.recommend._online.OnlineRecommender`: JSON, safetensors and the ONNX
int8 encoder; no pickle) and checks that nothing changed on disk since verification.

A request is ``{user, k}``, ``{history: [item, ...], k}`` or ``{text, k}`` (exactly one of the
three), behind a ``predict`` key, admitted by the server's admission control (one slot), scored
in a worker thread; ``lmforge_recommend_requests_total{form}`` counts the answered ones.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lmforge.apps import Served
from lmforge.apps.recommend._online import OnlineRecommender, RecommendError
from lmforge.apps.recommend._store import RecDir
from lmforge.errors import RunDirError
from lmforge.guard import trust_run
from lmforge.serve import ApiError, ExtensionHost, ServeContext

if TYPE_CHECKING:
    from fastapi import APIRouter

__all__ = ["FORMS", "MAX_HISTORY", "RecommendExtension", "serving"]

log = logging.getLogger(__name__)

FORMS = ("user", "history", "text")
"""The request forms, as counted in ``lmforge_recommend_requests_total{form}``."""
MAX_HISTORY = 1000
"""The most items one ``{history}`` request may send."""


def serving(path: Path) -> Served | None:
    """The recommender served from ``path``, or None when ``path`` is no trained recommender directory."""
    if not RecDir(path).meta.is_file():
        return None
    return Served(extension=RecommendExtension(path))


class RecommendExtension:
    """``POST /v1/recommend`` over one trained recommender directory (see the module docstring)."""

    name = "recommend"

    def __init__(self, root: str | Path, embedder: Any = None) -> None:
        self.root = Path(root)
        self.embedder = embedder
        self.model: OnlineRecommender | None = None

    def start(self, host: ExtensionHost) -> None:
        settings = host.settings
        if not (self.root / "manifest.json").is_file():
            raise RunDirError(f"{self.root} has no manifest.json, so it cannot be verified: train it again with "
                              f"`lmforge recommend train SPEC --out {self.root}` (which writes and signs one).")
        verified = trust_run(self.root, settings.public_key, allow_unsigned=settings.allow_unsigned)
        model = OnlineRecommender(self.root, embedder=self.embedder, threads=settings.batching.threads)
        verified.check_unchanged()  # what was loaded is what was verified
        self.model = model
        log.info("recommender %s loaded (serving %s; %d users, %d items)", self.root, model.selected,
                 len(model.user_ids), len(model.item_ids))

    def ready(self) -> bool:
        return self.model is not None

    def close(self) -> None:
        self.model = None

    def router(self, context: ServeContext) -> APIRouter:
        from lmforge.apps.recommend._routes import recommend_router

        return recommend_router(self, context, MAX_HISTORY)

    def answer(self, form: str, value: Any, k: int) -> dict[str, Any]:
        """The response body of one request (run in a worker thread), or an :class:`ApiError`."""
        model = self.model
        if model is None:
            raise ApiError(503, "not_ready", "The recommender is still loading; retry shortly.")
        try:
            if form == "user":
                got = model.for_user(value, k)
            elif form == "history":
                got = model.for_history(value, k)
            else:
                got = model.for_text(value, k)
        except RecommendError as exc:
            raise ApiError(exc.status, exc.code, str(exc)) from None
        return {"items": got.items, "scores": got.scores, "model": got.model}
