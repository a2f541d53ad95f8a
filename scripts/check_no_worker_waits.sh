#!/usr/bin/env bash
# No worker thread may wait for scheduler capacity. The dispatcher leases a task's capacity (its worker
# slot and its resources, e.g. a model's concurrency) before it hands the task to a worker, so a running
# worker already holds everything it needs. A worker that waited for capacity instead would be a hidden
# waiter: it occupies a worker slot doing nothing, ready tasks whose capacity is free queue behind it, and
# the scheduler's fairness and accounting never see the wait. This check fails when production code
# (threadsched/) reintroduces such a wait:
#  * a blocking acquire() anywhere but the admission controller (admission.py). The per-lease release flag
#    in admission_values.py is a Lock taken with blocking=False, which is allowed;
#  * a blocking acquire() inside the controller, which only ever takes its BoundedSemaphores with
#    blocking=False (all-or-nothing, never waiting).
# Usage: scripts/check_no_worker_waits.sh [DIR]   (default: the package next to this script)
set -euo pipefail
root=${1:-"$(cd "$(dirname "$0")/.." && pwd)/threadsched"}
status=0

# Every .acquire( outside admission.py must be non-blocking; docstrings/comments mentioning it are fine.
# Request admission (requests/) is a different layer: a running task waits there for a *request* permit
# (a provider's rate limit on one model call), never for scheduler capacity, so its admission.acquire(...)
# calls are allowed.
# The dispatcher thread sleeps on its own wake-up lock (dispatcher.py ``self._wake``): not a worker, not capacity.
blocking=$(grep -rnE --include='*.py' '\.acquire\(' "$root" \
    | grep -vE '^[^:]*/admission\.py:' \
    | grep -vE '^[^:]*/requests/[a-z_]+\.py:[0-9]+:.*\b_?admission\.acquire\(' \
    | grep -vE '^[^:]*/dispatcher\.py:[0-9]+:.*\bself\._wake\.acquire\(' \
    | grep -vE 'acquire\(blocking=False\)|acquire\(False\)' \
    | grep -vE ':[0-9]+:\s*(#|""")' || true)
if [[ -n "$blocking" ]]; then
    echo "check_no_worker_waits: blocking acquire() outside the admission controller:" >&2
    echo "$blocking" >&2
    status=1
fi

# Inside the controller, semaphores are only taken without blocking.
controller_blocking=$(grep -nE '\.acquire\(' "$root/core/admission.py" | grep -vE 'blocking=False|acquire\(False\)' \
    | grep -vE ':[0-9]+:\s*(#|""")' || true)
if [[ -n "$controller_blocking" ]]; then
    echo "check_no_worker_waits: a blocking semaphore acquire() inside the controller:" >&2
    echo "$controller_blocking" >&2
    status=1
fi

if [[ $status -eq 0 ]]; then
    echo "check_no_worker_waits: ok ($root)"
fi
exit $status
