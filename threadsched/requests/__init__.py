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

__all__ = [
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
