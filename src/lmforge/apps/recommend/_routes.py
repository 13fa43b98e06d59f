"""The ``POST /v1/recommend`` route of :class:`~lmforge.apps.recommend._serve.RecommendExtension`."""

# No `from __future__ import annotations` here: FastAPI reads the route signature at runtime, and the
# request model is a local class built from this server's limits.

import asyncio
from typing import TYPE_CHECKING, Annotated, Any

from lmforge.serve import ServeContext, admitted

if TYPE_CHECKING:
    from fastapi import APIRouter

__all__ = ["recommend_router"]


def recommend_router(extension: Any, context: ServeContext, max_history: int) -> "APIRouter":
    """The route, its request model (the server's text limit, ``max_history`` items) and its counter."""
    import prometheus_client as pc
    from fastapi import APIRouter, Depends, Request
    from pydantic import BaseModel, ConfigDict, Field, StringConstraints, model_validator

    max_chars = context.settings.limits.max_text_chars
    Text = Annotated[str, StringConstraints(min_length=1, max_length=max_chars)]
    ItemId = Annotated[str, StringConstraints(min_length=1, max_length=256)]

    class RecommendRequest(BaseModel):
        model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [
            {"user": "42", "k": 10}, {"history": ["1", "260", "1196"], "k": 10},
            {"text": "a heist comedy set in space", "k": 5}]})

        user: ItemId | None = Field(default=None, description="A user of the training data (ids as in its files).")
        history: list[ItemId] | None = Field(default=None, min_length=1, max_length=max_history,
                                             description=f"A new user's items, oldest first (1 to {max_history}).")
        text: Text | None = Field(default=None, description=f"A description of the items wanted (<= {max_chars} chars).")
        k: int = Field(default=10, description="How many items (1..recommend.max_k of the trained recommender).")

        @model_validator(mode="after")
        def _one_form(self) -> "RecommendRequest":
            given = [f for f in ("user", "history", "text") if getattr(self, f) is not None]
            if len(given) != 1:
                raise ValueError(f"give exactly one of user, history or text (got {', '.join(given) or 'none'})")
            return self

    class RecommendResponse(BaseModel):
        items: list[str] = Field(description="Item ids, best first; never one of the user's or history's items.")
        scores: list[float] = Field(description="The served model's score of each item.")
        model: str = Field(description="What scored them: the served model (e.g. blend), or text for a text.")

    requests = pc.Counter("lmforge_recommend_requests", "Answered /v1/recommend requests, by form.", ["form"],
                          registry=context.metrics.registry)
    Key = Annotated[Any, Depends(context.require_predict)]
    router = APIRouter()

    @router.post("/v1/recommend", response_model=RecommendResponse, tags=["recommend"],
                 summary="Recommend items for a known user, a new user's history, or a text")
    async def recommend(body: RecommendRequest, request: Request, key: Key) -> Any:
        form = next(f for f in ("user", "history", "text") if getattr(body, f) is not None)
        with admitted(request, 1):
            answer = await asyncio.to_thread(extension.answer, form, getattr(body, form), body.k)
        requests.labels(form).inc()
        return answer

    return router
