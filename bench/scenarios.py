"""Benchmark scenarios of ``bench/harness.py``: each one is a recipe (TOML text) built from the harness knobs.

Every recipe uses mock providers only (``kind = "mock"``), so a run is deterministic for a seed: the same
rows for every implementation, worker count and ordering. Each provider has a *latency factor*: its mock
latency is ``latency_ms * factor`` (and its jitter ``jitter_ms * factor``), so one ``--latency-ms`` scales a
whole scenario while keeping its slow and fast models apart. Model limits are scheduler resources
(``llm:<provider>/<model>``); ``--limit provider/model=N`` (or ``model=N``) overrides them.

Scenarios (``SCENARIOS``):

* ``heavy_root``: a slow root llm column (no template references, so the engine runs it as one task per
  row group that calls the model once per row; latency factor 2) on a model with a small limit, with
  several row groups in flight, followed by fast downstream cells on another model (factor 0.5). With
  one FIFO queue the downstream cells that become ready queue behind root tasks waiting for the saturated
  root model (head-of-line blocking); a per-column fair queue leases them at once: their model is free.
* ``wide_roots``: many root llm columns on one shared model, merged by a template and reviewed downstream.
* ``narrow_serial``: a long chain of single-dependency llm cells.
* ``generate_judge``: a generator model and a slower judge model with separate limits, a pre-batch filter
  and a small retryable failure rate (retries must not change the output).
* ``hidden_waiter``: one model with a limit far below the worker count, so a spawn-then-wait pool parks
  workers on the model semaphore.
* ``saturated_root``: ``heavy_root``'s recipe where the *root* work can fill the worker pool (8 workers, all
  24 row groups in flight, drafter limit 16, tagger limit 8), so downstream cells that become ready compete
  with queued root tasks for worker slots; threadsched under ``strict`` and ``bounded_borrow`` by default,
  for the bounded-borrow targets (``harness_policies``).
* ``two_resource_mix``: no recipe: a two-resource mixed workload on a bare ``Scheduler``, strict against
  drf (``bench/two_resource_mix.py``).
* ``cross_provider_cooldown``: no recipe: two mock HTTP providers, A throttled, strict and provider_aware
  against B alone (``bench/cross_provider_cooldown.py``).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

__all__ = ["KNOB_NAMES", "SCENARIOS", "Knobs", "Provider", "Scenario", "get_scenario", "recipe_text"]

KNOB_NAMES = ("records", "buffer_size", "row_groups_in_flight", "workers", "limits", "latency_ms", "jitter_ms", "seed")


@dataclass(frozen=True, slots=True)
class Knobs:
    """The inputs every scenario accepts. ``limits`` maps ``provider/model`` to its scheduler limit."""

    records: int
    buffer_size: int
    row_groups_in_flight: int
    workers: int
    limits: Mapping[str, int] = field(default_factory=dict)
    latency_ms: float = 0.0
    jitter_ms: float = 0.0
    seed: int = 7

    def as_dict(self) -> dict[str, Any]:
        return {name: dict(self.limits) if name == "limits" else getattr(self, name) for name in KNOB_NAMES}


@dataclass(frozen=True, slots=True)
class Provider:
    name: str
    models: tuple[str, ...]
    latency_factor: float = 1.0
    failure_rate: float = 0.0


@dataclass(frozen=True, slots=True)
class Scenario:
    """``columns``: TOML ``[[columns]]`` bodies (one dict per column); ``processors`` likewise."""

    id: str
    description: str
    defaults: Knobs
    quick: Mapping[str, Any]  # knob overrides of --quick
    providers: tuple[Provider, ...] = ()
    columns: Callable[[Knobs], list[dict[str, Any]]] | None = None
    processors: tuple[dict[str, Any], ...] = ()
    has_recipe: bool = True
    quick_iterations: int = 2
    default_warmups: int | None = None  # None: the harness default
    policies: str | None = None  # default --policies (None: strict)
    impl: str | None = None  # default --impl (None: every implementation)

    def knobs(self, *, quick: bool, overrides: Mapping[str, Any]) -> Knobs:
        knobs = replace(self.defaults, **dict(self.quick)) if quick else self.defaults
        limits = dict(knobs.limits)
        limits.update(overrides.get("limits", {}))
        return replace(knobs, **{k: v for k, v in overrides.items() if k != "limits"}, limits=limits)

    def resource(self, model: str) -> str:
        """The resource key of ``provider/model`` or of a bare model name (unique in this scenario)."""
        matches = [f"{p.name}/{m}" for p in self.providers for m in p.models if model in (m, f"{p.name}/{m}")]
        if len(matches) != 1:
            known = ", ".join(f"{p.name}/{m}" for p in self.providers for m in p.models) or "none"
            raise ValueError(f"scenario {self.id!r}: unknown or ambiguous model {model!r} (models: {known})")
        return matches[0]


def _toml(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)  # JSON string escapes are valid TOML basic-string escapes
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_toml(item) for item in value) + "]"
    raise TypeError(f"cannot write {value!r} as TOML")


def recipe_text(scenario: Scenario, knobs: Knobs) -> str:
    """The scenario's recipe for ``knobs`` (a ValueError for a limit naming an unknown model)."""
    if not scenario.has_recipe or scenario.columns is None:
        raise ValueError(f"scenario {scenario.id!r} has no recipe")
    limits = {scenario.resource(model): limit for model, limit in knobs.limits.items()}
    lines = [
        f"# bench/harness.py scenario {scenario.id}: {scenario.description}",
        "[run]",
        f"records = {knobs.records}",
        f"buffer_size = {knobs.buffer_size}",
        f"max_row_groups_in_flight = {knobs.row_groups_in_flight}",
        f"max_workers = {knobs.workers}",
        f"seed = {knobs.seed}",
        f'output = "bench-{scenario.id}"',
        "",
        "[resources]",
        *(f'"llm:{resource}" = {limit}' for resource, limit in sorted(limits.items())),
    ]
    for provider in scenario.providers:
        lines += [
            "",
            f"[providers.{provider.name}]",
            'kind = "mock"',
            f"models = {_toml(list(provider.models))}",
            f"latency_ms = {_toml(float(knobs.latency_ms * provider.latency_factor))}",
            f"jitter_ms = {_toml(float(knobs.jitter_ms * provider.latency_factor))}",
            f"failure_rate = {_toml(float(provider.failure_rate))}",
        ]
    for table, bodies in (("columns", scenario.columns(knobs)), ("processors", list(scenario.processors))):
        for body in bodies:
            lines += ["", f"[[{table}]]", *(f"{key} = {_toml(value)}" for key, value in body.items())]
    return "\n".join(lines) + "\n"


_TOPICS = ["astronomy", "cooking", "history", "music", "geology", "off-topic"]
_ANGLES = ["a date", "a person", "a place", "a number", "a tool", "a word", "a rule", "a record", "a myth", "a map"]


def _topic() -> dict[str, Any]:
    return {"name": "topic", "kind": "sampler", "values": _TOPICS}


def _angle() -> dict[str, Any]:
    return {"name": "angle", "kind": "sampler", "values": _ANGLES}


def _heavy_root(_knobs: Knobs) -> list[dict[str, Any]]:
    return [
        _topic(),
        _angle(),
        {"name": "draft", "kind": "llm", "model": "heavy/drafter", "prompt": "Draft a long background document."},
        {"name": "summary", "kind": "llm", "model": "fast/tagger", "prompt": "Summarize for {topic}, about {angle}: {draft}"},
        {"name": "label", "kind": "template", "template": "{topic}/{angle}: {summary}"},
    ]


WIDE_ROOTS = 6


def _wide_roots(_knobs: Knobs) -> list[dict[str, Any]]:
    roots = [
        {"name": f"part{index}", "kind": "llm", "model": "wide/root", "prompt": f"Write section {index} of the report."}
        for index in range(1, WIDE_ROOTS + 1)
    ]
    merge = " | ".join(f"{{part{index}}}" for index in range(1, WIDE_ROOTS + 1))
    return [
        _topic(),
        *roots,
        {"name": "merged", "kind": "template", "template": f"{{topic}}: {merge}"},
        {"name": "review", "kind": "llm", "model": "fast/reviewer", "prompt": "Review this report: {merged}"},
    ]


CHAIN_LENGTH = 6


def _narrow_serial(_knobs: Knobs) -> list[dict[str, Any]]:
    steps = [{"name": "step1", "kind": "llm", "model": "chain/step", "prompt": "Start a story about {topic}."}]
    for index in range(2, CHAIN_LENGTH + 1):
        steps.append(
            {"name": f"step{index}", "kind": "llm", "model": "chain/step", "prompt": f"Continue the story: {{step{index - 1}}}"}
        )
    return [_topic(), *steps]


def _generate_judge(_knobs: Knobs) -> list[dict[str, Any]]:
    return [
        _topic(),
        _angle(),
        {"name": "question", "kind": "llm", "model": "gen/writer", "prompt": "Ask about {topic}, centred on {angle}."},
        {"name": "answer", "kind": "llm", "model": "gen/writer", "prompt": "Answer in one sentence: {question}"},
        {"name": "verdict", "kind": "llm", "model": "judge/judge", "prompt": "Rate 1-5.\nQ: {question}\nA: {answer}"},
        {"name": "label", "kind": "template", "template": "{topic}: {verdict}"},
    ]


def _hidden_waiter(_knobs: Knobs) -> list[dict[str, Any]]:
    return [
        _topic(),
        {"name": "call", "kind": "llm", "model": "tight/model", "prompt": "Say something about {topic}."},
        {"name": "label", "kind": "template", "template": "{topic}: {call}"},
    ]


_OFF_TOPIC_FILTER = {"stage": "pre_batch", "kind": "filter", "column": "topic", "op": "!=", "value": "off-topic"}
_QUICK = {"records": 60, "buffer_size": 5, "latency_ms": 2.0, "jitter_ms": 0.0}

SCENARIOS: dict[str, Scenario] = {
    scenario.id: scenario
    for scenario in (
        Scenario(
            "two_resource_mix",
            "two groups on cpu+mem (A weight 1 needs cpu 1/mem 3, B weight 2 needs cpu 3/mem 1): dominant shares, "
            "strict vs drf (knobs: workers, seed)",
            Knobs(records=1, buffer_size=1, row_groups_in_flight=1, workers=32, seed=1),
            {},
            has_recipe=False,
            default_warmups=0,
        ),
        Scenario(
            "cross_provider_cooldown",
            "two mock HTTP providers, A throttled (429 + cooldown): B's throughput under strict and provider_aware "
            "vs B alone (knobs: workers, latency_ms, seed)",
            Knobs(records=1, buffer_size=1, row_groups_in_flight=1, workers=8, latency_ms=20.0, seed=0),
            {},
            has_recipe=False,
            default_warmups=0,
        ),
        Scenario(
            "heavy_root",
            "slow root llm (one task per row group, small model limit) -> fast downstream cells",
            Knobs(240, 10, 6, 8, {"heavy/drafter": 2, "fast/tagger": 4}, latency_ms=10.0, jitter_ms=2.0),
            {**_QUICK, "latency_ms": 4.0},
            (Provider("heavy", ("drafter",), latency_factor=2.0), Provider("fast", ("tagger",), latency_factor=0.5)),
            _heavy_root,
        ),
        Scenario(
            "saturated_root",
            "heavy_root where the root work can fill the worker pool: strict vs bounded_borrow",
            Knobs(240, 10, 24, 8, {"heavy/drafter": 16, "fast/tagger": 8}, latency_ms=10.0, jitter_ms=2.0),
            {"records": 60, "buffer_size": 5, "row_groups_in_flight": 6, "workers": 4, "latency_ms": 2.0},
            (Provider("heavy", ("drafter",), latency_factor=2.0), Provider("fast", ("tagger",), latency_factor=0.5)),
            _heavy_root,
            policies="strict,bounded_borrow",
            impl="threadsched",
        ),
        Scenario(
            "wide_roots",
            f"{WIDE_ROOTS} root llm columns on one shared model -> merge template -> review",
            Knobs(120, 10, 4, 8, {"wide/root": 4, "fast/reviewer": 4}, latency_ms=5.0, jitter_ms=1.0),
            _QUICK,
            (Provider("wide", ("root",)), Provider("fast", ("reviewer",))),
            _wide_roots,
        ),
        Scenario(
            "narrow_serial",
            f"a chain of {CHAIN_LENGTH} single-dependency llm cells on one model",
            Knobs(120, 10, 4, 8, {"chain/step": 4}, latency_ms=5.0, jitter_ms=1.0),
            _QUICK,
            (Provider("chain", ("step",)),),
            _narrow_serial,
        ),
        Scenario(
            "generate_judge",
            "generator model -> slower judge model (separate limits), pre-batch filter, 2% retryable failures",
            Knobs(200, 20, 4, 8, {"gen/writer": 4, "judge/judge": 2}, latency_ms=10.0, jitter_ms=3.0),
            _QUICK,
            (Provider("gen", ("writer",), failure_rate=0.02), Provider("judge", ("judge",), 3.0, failure_rate=0.02)),
            _generate_judge,
            (_OFF_TOPIC_FILTER,),
        ),
        Scenario(
            "hidden_waiter",
            "one model with a limit far below the workers: spawn-then-wait parks workers on it",
            Knobs(80, 10, 4, 8, {"tight/model": 2}, latency_ms=10.0, jitter_ms=2.0),
            _QUICK,
            (Provider("tight", ("model",)),),
            _hidden_waiter,
        ),
    )
}


def get_scenario(name: str) -> Scenario:
    try:
        return SCENARIOS[name]
    except KeyError:
        raise ValueError(f"unknown scenario {name!r} (known: {', '.join(SCENARIOS)})") from None
