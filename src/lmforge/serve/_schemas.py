"""Request and response models of the HTTP API (pydantic, at the HTTP boundary only).

The predict request model is built per app by :func:`predict_request_model`, so the
configured limits (texts per request, characters per text) are part of the OpenAPI schema
and are enforced by validation, with the limit in the 422 message.
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from lmforge.serve._names import NAME_PATTERN

__all__ = [
    "CanaryRequest",
    "ErrorInfo",
    "ErrorResponse",
    "HealthResponse",
    "KeyOut",
    "ModelOut",
    "ModelsResponse",
    "OpenAIModel",
    "PredictRequestBase",
    "PredictResponse",
    "Prediction",
    "ReadyResponse",
    "RegisterRequest",
    "RollbackResponse",
    "VersionOut",
    "VersionsResponse",
    "predict_request_model",
]

ModelName = Annotated[str, StringConstraints(pattern=NAME_PATTERN, min_length=1, max_length=64)]


class ErrorInfo(BaseModel):
    code: str = Field(
        description="Machine-readable error code, e.g. validation_error, rate_limited, not_found."
    )
    message: str = Field(description="What went wrong and how to fix it.")
    details: list[dict[str, Any]] | None = Field(
        default=None, description="Per-field problems of a validation error (location, type, message)."
    )


class ErrorResponse(BaseModel):
    """The body of every error response."""

    error: ErrorInfo


class PredictRequestBase(BaseModel):
    """What every app's predict request holds; :func:`predict_request_model` adds the app's limits."""

    texts: list[str]
    model: str | None = None


def predict_request_model(max_texts: int, max_chars: int) -> type[PredictRequestBase]:
    """The predict request with this app's limits built into its schema."""
    text = Annotated[str, StringConstraints(max_length=max_chars)]

    class PredictRequest(PredictRequestBase):
        model_config = ConfigDict(
            extra="forbid",
            json_schema_extra={"examples": [{"texts": ["@united lost my bag again", "on time, thanks"]}]},
        )

        texts: list[text] = Field(
            min_length=1,
            max_length=max_texts,
            description=f"Texts to classify: 1 to {max_texts} per request, each at most {max_chars} characters.",
        )
        model: ModelName | None = Field(
            default=None, description="Model name (see GET /v1/models); default: the server's default model."
        )

    return PredictRequest


class Prediction(BaseModel):
    prediction_id: str = Field(description="Unique id (uuid4 hex); send it back with feedback labels.")
    label: str = Field(description="The most probable label.")
    score: float = Field(description="Probability of `label`.")
    scores: dict[str, float] = Field(description="Probability of every label.")
    model: str
    version: int


class PredictResponse(BaseModel):
    model: str = Field(description="Model that answered.")
    version: int = Field(description="Version that answered (the canary's, for requests routed to it).")
    predictions: list[Prediction] = Field(description="One per input text, in input order.")


class HealthResponse(BaseModel):
    status: str = Field(examples=["ok"])


class ReadyResponse(BaseModel):
    status: str = Field(examples=["ready"])
    models: dict[str, dict[str, Any]] | None = Field(
        default=None, description="Loaded versions per model (only for a caller with a valid API key)."
    )


class LoadedOut(BaseModel):
    stable: int | None = Field(description="Version loaded for most traffic.")
    canary: int | None = Field(description="Canary version loaded, if any.")
    queued_texts: int
    load_error: str | None = Field(
        description="Why the registry's choice could not be loaded, if it could not."
    )


class ModelOut(BaseModel):
    name: str
    active_version: int | None
    canary_version: int | None
    canary_percent: float
    versions: int = Field(description="Number of registered versions.")
    created_at: str
    updated_at: str
    loaded: LoadedOut | None = Field(default=None, description="What this server has loaded for the model.")


class OpenAIModel(BaseModel):
    id: str
    object: str = "model"
    created: int
    owned_by: str


class ModelsResponse(BaseModel):
    models: list[ModelOut]
    object: str = Field(default="list", description="OpenAI's list shape, beside ``models``.")
    data: list[OpenAIModel] = Field(default_factory=list, description="The models as OpenAI lists them.")


class VersionOut(BaseModel):
    model: str
    version: int
    run_path: str
    variant: str
    manifest_sha256: str
    signed: bool
    key_id: str | None
    labels: list[str]
    status: str = Field(description="registered, active, canary, retired or rolled_back.")
    registered_at: str
    registered_by: str


class VersionsResponse(BaseModel):
    model: str
    versions: list[VersionOut]


class RegisterRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    run: str = Field(
        min_length=1,
        max_length=4096,
        description="Run directory on the server's filesystem (verified before it is registered).",
    )
    variant: str | None = Field(
        default=None,
        max_length=128,
        description="Compressed variant to pin, or fp32 (default: the run's selected one).",
    )
    activate: bool = Field(default=False, description="Activate the new version once registered.")


class CanaryRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    version: int = Field(ge=1, le=2**31 - 1, description="Candidate version.")
    percent: float = Field(ge=0, le=100, description="Share of traffic to the candidate; 0 stops the canary.")


class RollbackResponse(BaseModel):
    model: ModelOut
    action: str = Field(
        description="canary_aborted (a running canary was stopped) or reverted (the previous "
        "active version is active again)."
    )
    from_version: int | None
    to_version: int | None
    reason: str


class KeyOut(BaseModel):
    key_id: str
    name: str
    role: str
    rate_per_s: float | None
    created_at: str
    created_by: str
    revoked_at: str | None
    active: bool
