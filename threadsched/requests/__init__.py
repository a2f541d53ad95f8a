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
from threadsched.requests.executor import ModelRequestExecutor
from threadsched.requests.http_provider import OpenAIChatModel, OpenAIChatTransport
from threadsched.requests.outcomes import (
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
