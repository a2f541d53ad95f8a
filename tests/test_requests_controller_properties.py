"""Property test: random try_acquire / release(outcome, Retry-After) / clock steps against a model of the
AIMD rule. Every lease is admitted under its resource's limit and the endpoint's aggregate cap, the limit
stays in [1, cap], in-flight counts equal the unreleased leases, there is at most one decrease per wave,
and reading snapshots changes nothing."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule
from support import FakeClock

from threadsched.requests import (
    AdaptiveRequestAdmissionController,
    ProviderModelKey,
    RequestAdmissionConfig,
    RequestAdmissionItem,
    RequestAdmissionLease,
    RequestDomain,
    RequestOutcome,
    RequestResourceKey,
)

PM = ProviderModelKey("mock", "fast")
ALIAS = ProviderModelKey("alias", "fast")
CHAT = RequestResourceKey("mock", "fast", RequestDomain.CHAT)
EMBEDDING = RequestResourceKey("mock", "fast", RequestDomain.EMBEDDING)
ALIAS_CHAT = RequestResourceKey("alias", "fast", RequestDomain.CHAT)
CANONICAL = {CHAT: CHAT, ALIAS_CHAT: CHAT, EMBEDDING: EMBEDDING}
CAP = 3  # min(4, 3): the alias declares the smaller cap
CONFIG = RequestAdmissionConfig(
    caps={PM: 4, ALIAS: 3},
    aliases={ALIAS: PM},
    decrease_factor=0.5,
    increase_step=1,
    successes_until_increase=2,
    default_cooldown_s=1.0,
    max_cooldown_s=4.0,
    ceiling_hold_s=6.0,
)


@dataclass
class Model:
    limit: int = CAP
    wave: int = 0
    blocked_until: float = -math.inf
    successes: int = 0
    ceiling: int | None = None
    ceiling_at: float = -math.inf
    released: int = 0
    double_releases: int = 0
    leases: list[RequestAdmissionLease] = field(default_factory=list)


class RequestAdmissionMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.clock = FakeClock(0.0)
        self.controller = AdaptiveRequestAdmissionController(CONFIG, clock=self.clock)
        self.models = {CHAT: Model(), EMBEDDING: Model()}
        self.released: list[RequestAdmissionLease] = []
        self.decreased_waves: set[tuple[RequestResourceKey, int]] = set()

    def _aggregate(self) -> int:
        return sum(len(model.leases) for model in self.models.values())

    @rule(key=st.sampled_from(sorted(CANONICAL)))
    def try_acquire(self, key: RequestResourceKey) -> None:
        model = self.models[CANONICAL[key]]
        now = self.clock.now
        expected = (
            "cooldown"
            if now < model.blocked_until
            else "at_limit"
            if len(model.leases) >= model.limit
            else "aggregate_cap"
            if self._aggregate() >= CAP
            else None
        )
        outcome = self.controller.try_acquire(RequestAdmissionItem(key))
        if isinstance(outcome, RequestAdmissionLease):
            assert expected is None, expected
            assert outcome.resource == CANONICAL[key] and outcome.wave == model.wave
            model.leases.append(outcome)
        else:
            assert outcome.reason == expected
            if expected == "cooldown":
                assert outcome.retry_after == model.blocked_until - now

    @precondition(lambda self: any(model.leases for model in self.models.values()))
    @rule(
        data=st.data(),
        outcome=st.sampled_from(list(RequestOutcome)),
        retry_after=st.none() | st.sampled_from([0.0, 0.5, 2.0, 10.0]),
    )
    def release(self, data: st.DataObject, outcome: RequestOutcome, retry_after: float | None) -> None:
        leases = [lease for model in self.models.values() for lease in model.leases]
        lease = data.draw(st.sampled_from(leases))
        model = self.models[lease.resource]
        model.leases.remove(lease)
        before = model.limit
        now = self.clock.now
        if outcome is RequestOutcome.RATE_LIMITED:
            cooldown = min(max(1.0 if retry_after is None else retry_after, 0.0), 4.0)
            model.successes = 0
            if lease.wave == model.wave:
                model.ceiling, model.ceiling_at = model.limit, now
                model.limit = max(1, math.floor(model.limit * 0.5))
                model.wave += 1
                model.blocked_until = max(model.blocked_until, now + cooldown)
            elif retry_after is not None:
                model.blocked_until = max(model.blocked_until, now + cooldown)
        elif outcome is RequestOutcome.SUCCESS and now >= model.blocked_until:
            model.successes += 1
            if model.successes >= 2:
                model.successes = 0
                held = model.ceiling is not None and now - model.ceiling_at < 6.0
                top = min(CAP, max(1, model.ceiling - 1)) if held and model.ceiling is not None else CAP
                model.limit = max(model.limit, min(top, model.limit + 1))
        result = self.controller.release(lease, outcome, retry_after=retry_after)
        assert (result.released, result.reason) == (True, "released")
        if model.limit != before:
            assert (result.limit_before, result.limit_after) == (before, model.limit)
        else:
            assert result.limit_before is None and result.limit_after is None
        if model.limit < before:
            assert (lease.resource, lease.wave) not in self.decreased_waves, "two decreases in one wave"
            self.decreased_waves.add((lease.resource, lease.wave))
        self.released.append(lease)
        model.released += 1

    @precondition(lambda self: bool(self.released))
    @rule(data=st.data())
    def release_again(self, data: st.DataObject) -> None:
        lease = data.draw(st.sampled_from(self.released))
        result = self.controller.release(lease, RequestOutcome.SUCCESS)
        assert (result.released, result.reason) == (False, "already_released")
        self.models[lease.resource].double_releases += 1

    @rule(key=st.sampled_from(sorted(CANONICAL)))
    def peek(self, key: RequestResourceKey) -> None:
        used = set(self.controller.snapshots())
        snapshot = self.controller.snapshot(key)
        assert snapshot.resource == CANONICAL[key] and set(self.controller.snapshots()) == used
        assert snapshot.current_limit == self.models[CANONICAL[key]].limit

    @rule(seconds=st.sampled_from([0.25, 0.5, 1.0, 3.0]))
    def advance(self, seconds: float) -> None:
        self.clock.now += seconds

    @invariant()
    def consistent(self) -> None:
        first = self.controller.snapshots()
        assert first == self.controller.snapshots()  # reading changes nothing
        for key, snapshot in first.items():
            model = self.models[key]
            assert 1 <= snapshot.current_limit <= snapshot.static_cap == CAP
            assert snapshot.current_limit == model.limit
            assert snapshot.in_flight == len(model.leases)
            assert snapshot.aggregate_in_flight == self._aggregate() <= CAP
            assert (snapshot.released_total, snapshot.double_releases) == (model.released, model.double_releases)
        stats = self.controller.statistics()
        assert stats["active_leases"] == self._aggregate()
        assert stats["waiters"] == 0


RequestAdmissionMachine.TestCase.settings = settings(
    max_examples=60, stateful_step_count=40, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
TestRequestAdmissionMachine = RequestAdmissionMachine.TestCase
