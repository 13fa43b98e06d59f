"""The model registry routes (admin keys only): list models and versions, register, activate, canary, rollback.

Each action is audited with the key that asked for it (``api-key:<id> (<name>)``); the
runtime loads a version completely before the registry records it as serving.
"""

# No `from __future__ import annotations` here: FastAPI reads the route signatures at runtime.

import asyncio
import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Request

from lmforge.serve._dependencies import KeyCheck, runtime_of
from lmforge.serve._http_errors import ADMIN_ERRORS, AUTH_ERRORS, BODY_ERRORS, responses
from lmforge.serve._keys import ApiKey
from lmforge.serve._names import NAME_PATTERN
from lmforge.serve._registry_queries import ModelInfo
from lmforge.serve._runtime import Runtime
from lmforge.serve._schemas import (
    CanaryRequest,
    ModelOut,
    ModelsResponse,
    RegisterRequest,
    RollbackResponse,
    VersionOut,
    VersionsResponse,
)

__all__ = ["admin_router"]

Name = Annotated[str, Path(pattern=NAME_PATTERN, min_length=1, max_length=64, description="Model name.")]
Version = Annotated[int, Path(ge=1, le=2**31 - 1, description="Version number.")]


def _actor(key: ApiKey) -> str:
    return f"api-key:{key.key_id} ({key.name})"


def _model_out(runtime: Runtime, info: ModelInfo) -> dict[str, Any]:
    """A model's registry state with what this server has loaded for it."""
    slot = runtime.slots.get(info.name)
    loaded = None
    if slot is not None:
        loaded = {
            "stable": slot.stable.version if slot.stable else None,
            "canary": slot.canary.version if slot.canary else None,
            "queued_texts": runtime.queued_texts().get(info.name, 0),
            "load_error": slot.load_error,
        }
    return {**info.to_dict(), "loaded": loaded}


def _openai_model(info: ModelInfo) -> dict[str, Any]:
    """A model as an entry of OpenAI's model list (``created`` in Unix seconds)."""
    try:
        created = int(datetime.datetime.fromisoformat(info.created_at).timestamp())
    except (TypeError, ValueError):
        created = 0
    return {"id": info.name, "object": "model", "created": created, "owned_by": "lmforge"}


def admin_router(require_admin: KeyCheck, require_predict: KeyCheck) -> APIRouter:
    """The registry routes, behind ``require_admin`` (the model list behind ``require_predict``)."""
    AdminKey = Annotated[ApiKey, Depends(require_admin)]
    PredictKey = Annotated[ApiKey, Depends(require_predict)]
    router = APIRouter(tags=["registry"])

    @router.get(
        "/v1/models",
        response_model=ModelsResponse,
        summary="List models",
        description="The registry's models (``models``) and, beside them, OpenAI's list shape (``object``, "
        "``data``), so OpenAI clients' ``models.list()`` works. Any key may read it.",
        responses=responses(*AUTH_ERRORS),
    )
    async def list_models(request: Request, _: PredictKey) -> dict[str, Any]:
        runtime = runtime_of(request)
        models = await asyncio.to_thread(runtime.registry.list_models)
        return {"models": [_model_out(runtime, m) for m in models], "object": "list",
                "data": [_openai_model(m) for m in models]}

    @router.get(
        "/v1/models/{name}/versions",
        response_model=VersionsResponse,
        summary="List a model's versions",
        responses=responses(*ADMIN_ERRORS, 404, 422),
    )
    async def list_versions(request: Request, name: Name, _: AdminKey) -> dict[str, Any]:
        versions = await asyncio.to_thread(runtime_of(request).registry.list_versions, name)
        return {"model": name, "versions": [v.to_dict() for v in versions]}

    @router.post(
        "/v1/models/{name}/versions",
        response_model=VersionOut,
        status_code=201,
        summary="Register a run as a new version",
        responses=responses(*ADMIN_ERRORS, *BODY_ERRORS, 409),
    )
    async def register_version(
        body: RegisterRequest, request: Request, name: Name, key: AdminKey
    ) -> dict[str, Any]:
        info = await runtime_of(request).register(
            name, body.run, body.variant, activate=body.activate, actor=_actor(key)
        )
        return info.to_dict()

    @router.post(
        "/v1/models/{name}/versions/{version}/activate",
        response_model=ModelOut,
        summary="Activate a version (hot swap)",
        responses=responses(*ADMIN_ERRORS, 404, 409, 422),
    )
    async def activate(request: Request, name: Name, version: Version, key: AdminKey) -> dict[str, Any]:
        runtime = runtime_of(request)
        info = await runtime.activate(name, version, actor=_actor(key))
        return _model_out(runtime, info)

    @router.post(
        "/v1/models/{name}/canary",
        response_model=ModelOut,
        summary="Route a share of traffic to a candidate version",
        responses=responses(*ADMIN_ERRORS, *BODY_ERRORS, 404, 409),
    )
    async def canary(body: CanaryRequest, request: Request, name: Name, key: AdminKey) -> dict[str, Any]:
        runtime = runtime_of(request)
        info = await runtime.set_canary(name, body.version, body.percent, actor=_actor(key))
        return _model_out(runtime, info)

    @router.post(
        "/v1/models/{name}/rollback",
        response_model=RollbackResponse,
        summary="Stop the canary, or re-activate the previous version",
        responses=responses(*ADMIN_ERRORS, 404, 409, 422),
    )
    async def rollback(request: Request, name: Name, key: AdminKey) -> dict[str, Any]:
        runtime = runtime_of(request)
        info, done = await runtime.rollback(name, actor=_actor(key))
        return {"model": _model_out(runtime, info), **done}

    return router
