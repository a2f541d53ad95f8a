"""Request admission for model calls: adaptive per-provider limits and the model request executor."""

from __future__ import annotations

from .contracts import (
    ProviderModelKey,
    RequestAdmissionConfig,
    RequestAdmissionDenied,
    RequestAdmissionError,
    RequestAdmissionItem,
    RequestAdmissionLease,
    RequestDomain,
    RequestOutcome,
    RequestReleaseResult,
    RequestResourceKey,
    RequestResourceSnapshot,
)
from .controller import AdaptiveRequestAdmissionController
from .executor import ModelRequestExecutor
from .http_provider import OpenAIChatModel, OpenAIChatTransport
from .outcomes import (
    ModelRequest,
    ModelRequestError,
    ModelResponse,
    ModelTransport,
    RequestCancelledError,
    RequestRetryPolicy,
    TransportConnectionError,
    TransportResponse,
    TransportTimeout,
    classify,
)

__all__ = [
    "AdaptiveRequestAdmissionController",
    "ModelRequest",
    "ModelRequestError",
    "ModelRequestExecutor",
    "ModelResponse",
    "ModelTransport",
    "OpenAIChatModel",
    "OpenAIChatTransport",
    "RequestCancelledError",
    "RequestRetryPolicy",
    "TransportConnectionError",
    "TransportResponse",
    "TransportTimeout",
    "classify",
    "ProviderModelKey",
    "RequestAdmissionConfig",
    "RequestAdmissionDenied",
    "RequestAdmissionError",
    "RequestAdmissionItem",
    "RequestAdmissionLease",
    "RequestDomain",
    "RequestOutcome",
    "RequestReleaseResult",
    "RequestResourceKey",
    "RequestResourceSnapshot",
]
