"""Request admission for model calls: adaptive per-provider limits and the model request executor."""

from __future__ import annotations

from threadsched.requests.contracts import (
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
from threadsched.requests.controller import AdaptiveRequestAdmissionController
from threadsched.requests.executor import REQUEST_RETRY, ModelRequestExecutor
from threadsched.requests.http_provider import OpenAIChatModel, OpenAIChatTransport
from threadsched.requests.outcomes import (
    ModelRequest,
    ModelRequestError,
    ModelResponse,
    ModelTransport,
    RequestCancelledError,
    TransportConnectionError,
    TransportResponse,
    TransportTimeout,
    classify,
)

__all__ = [
    "REQUEST_RETRY",
    "AdaptiveRequestAdmissionController",
    "ModelRequest",
    "ModelRequestError",
    "ModelRequestExecutor",
    "ModelResponse",
    "ModelTransport",
    "OpenAIChatModel",
    "OpenAIChatTransport",
    "RequestCancelledError",
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
