"""``kind = "openai"`` providers as the engine sees them: an endpoint with ``complete(model,
prompt, attempt=...)`` like the mock, backed by request admission and the model request executor.

One ``AdaptiveRequestAdmissionController`` per run holds every openai provider/model (cap: the provider's
``max_parallel_requests``); each provider has its own pooled HTTP transport and ``ModelRequestExecutor``
(retries of 429/5xx/timeouts live there, one request lease per attempt). Request events go to the run's
sink, correlated with the engine task that made the call (``current_task_correlation``).

A call that still fails after the executor's attempts raises ``HttpTransientError`` (the engine defers it
to a salvage round) or, for a non-retryable answer such as 400/401, ``HttpFatalError`` (the row is
dropped). Messages carry the outcome and HTTP status only: never the prompt, the reply or the API key.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping
from types import MappingProxyType

from threadsched.core.context import current_task_correlation
from threadsched.core.events import EventSink
from threadsched.core.policy import TaskAdmissionPolicy
from threadsched.engine.recipe import ProviderSpec, Recipe
from threadsched.policies import make_policy
from threadsched.policies.provider_aware import provider_aware_policy_for
from threadsched.requests.contracts import ProviderModelKey, RequestAdmissionConfig
from threadsched.requests.controller import AdaptiveRequestAdmissionController
from threadsched.requests.executor import ModelRequestError, ModelRequestExecutor, is_retryable
from threadsched.requests.http_provider import OpenAIChatModel, OpenAIChatTransport

__all__ = ["HttpFatalError", "HttpModelEndpoint", "HttpTransientError", "build_http_endpoints", "scheduler_policy"]


class HttpTransientError(Exception):
    """An HTTP model call failed after its retries with a retryable outcome (rate limit, 5xx, timeout)."""


class HttpFatalError(Exception):
    """An HTTP model call was refused for good (e.g. 400 or 401): retrying cannot help."""


class HttpModelEndpoint:
    """One openai provider: its models over one pooled transport. Safe to call from many worker threads."""

    def __init__(
        self,
        spec: ProviderSpec,
        executor: ModelRequestExecutor,
        transport: OpenAIChatTransport,
        column_weights: Mapping[str, float] | None = None,
        admission: AdaptiveRequestAdmissionController | None = None,
    ) -> None:
        self.provider = spec.name
        self.models = spec.models
        self.transport = transport
        self.admission = admission  # read-only for provider-aware task leases
        self._weights = dict(column_weights or {})
        self._models = {model: OpenAIChatModel(executor, spec.name, model, timeout_s=spec.timeout_s) for model in spec.models}

    def complete(self, model: str, prompt: str, *, attempt: int = 1) -> str:
        """The reply text; ``attempt`` (the engine's salvage round) does not change the request."""
        chat = self._models.get(model)
        if chat is None:
            raise ValueError(f"provider {self.provider!r} does not serve model {model!r} (serves: {', '.join(self.models)})")
        # Request waiters are ordered by group weight: the group is the calling task's column.
        column = current_task_correlation().get("column")
        group = column if isinstance(column, str) else "default"
        try:
            return chat.complete(prompt, group=group, weight=self._weights.get(group, 1.0))
        except ModelRequestError as error:
            kind = HttpTransientError if is_retryable(error.outcome, error.status) else HttpFatalError
            raise kind(
                f"{self.provider}/{model}: {error.outcome.value} (HTTP {error.status}) after {error.attempts} attempts"
            ) from None

    def close(self) -> None:
        self.transport.close()

    def __repr__(self) -> str:
        return f"<HttpModelEndpoint {self.provider!r} models={list(self.models)!r} {self.transport!r}>"


def scheduler_policy(name: str, endpoints: Mapping[str, object]) -> TaskAdmissionPolicy:
    """The run's task admission policy: ``name`` (``threadsched.policies``), made provider-aware when the
    run calls HTTP providers, so tasks for a provider in a rate-limit cooldown (or at its adaptive limit)
    are not leased while other work is ready (``ProviderAwarePolicy``)."""
    policy = make_policy(name)
    admission = next((e.admission for e in endpoints.values() if isinstance(e, HttpModelEndpoint)), None)
    return policy if admission is None else provider_aware_policy_for(admission, policy)


def build_http_endpoints(recipe: Recipe, events: EventSink | None = None) -> Mapping[str, HttpModelEndpoint]:
    """An endpoint per openai provider of ``recipe``, sharing one request admission controller."""
    providers = {name: spec for name, spec in recipe.providers.items() if spec.kind == "openai"}
    if not providers:
        return MappingProxyType({})
    caps = {
        ProviderModelKey(name, model): spec.max_parallel_requests or 1
        for name, spec in providers.items()
        for model in spec.models
    }
    sequence = itertools.count()  # the controller and the executors share the "requests" stream's numbers
    admission = AdaptiveRequestAdmissionController(RequestAdmissionConfig(caps=caps), events=events, sequence=sequence)
    endpoints: dict[str, HttpModelEndpoint] = {}
    try:
        for name, spec in providers.items():
            assert spec.base_url is not None  # the recipe requires it for openai providers
            transport = OpenAIChatTransport(
                spec.base_url,
                api_key_env=spec.api_key_env,
                timeout_s=spec.timeout_s or 60.0,
                max_connections=spec.max_parallel_requests or 4,
            )
            executor = ModelRequestExecutor(admission, transport, events=events, sequence=sequence)
            weights = {column.name: column.weight for column in recipe.columns}
            endpoints[name] = HttpModelEndpoint(spec, executor, transport, weights, admission)
    except BaseException:
        for endpoint in endpoints.values():
            endpoint.close()
        raise
    return MappingProxyType(endpoints)
