"""Request admission for model calls (issue 5): adaptive per-provider limits and the model request executor."""

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

__all__ = [
    "AdaptiveRequestAdmissionController",
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
