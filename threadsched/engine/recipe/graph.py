"""The column graph of a recipe: the dependency cycle the parser reports, and the order columns run in.

A graph is the column names in declaration order and each column's dependencies. Both walks follow
declaration order, so a given recipe always reports the same cycle and runs in the same order.
"""

from __future__ import annotations

import heapq
from collections.abc import Mapping, Sequence

__all__ = ["dependency_cycle", "topological_order"]


def dependency_cycle(names: Sequence[str], dependencies: Mapping[str, Sequence[str]]) -> tuple[str, ...] | None:
    """A dependency cycle in data-flow order (each name feeds the next; first == last), or None.

    Depth-first in declaration order, so the cycle reported for a given recipe is always the same.
    """
    state: dict[str, int] = {}  # 1: on the current path, 2: finished
    for start in names:
        if start in state:
            continue
        path = [start]
        stack = [iter(dependencies[start])]
        state[start] = 1
        while stack:
            dependency = next(stack[-1], None)
            if dependency is None:
                state[path.pop()] = 2
                stack.pop()
            elif state.get(dependency) == 1:
                # path[i:] each depends on the next and the last depends on path[i]: reverse for data flow.
                cycle = path[path.index(dependency) :]
                return (dependency, *reversed(cycle))
            elif dependency not in state:
                state[dependency] = 1
                path.append(dependency)
                stack.append(iter(dependencies[dependency]))
    return None


def topological_order(names: Sequence[str], dependencies: Mapping[str, Sequence[str]]) -> tuple[str, ...]:
    """Kahn's algorithm; among ready columns the earliest declared goes first. Shorter than ``names`` on a cycle."""
    index = {name: position for position, name in enumerate(names)}
    pending = {name: len(set(dependencies[name])) for name in names}
    dependents: dict[str, list[str]] = {name: [] for name in names}
    for name in names:
        for dependency in set(dependencies[name]):
            dependents[dependency].append(name)
    ready = [index[name] for name in names if pending[name] == 0]
    heapq.heapify(ready)
    order: list[str] = []
    while ready:
        name = names[heapq.heappop(ready)]
        order.append(name)
        for dependent in dependents[name]:
            pending[dependent] -= 1
            if pending[dependent] == 0:
                heapq.heappush(ready, index[dependent])
    return tuple(order)
