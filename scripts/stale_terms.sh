#!/usr/bin/env bash
# Fails when production code (threadsched/) reintroduces the worker-side wait for scheduler capacity:
#  * names of the old design, where a worker held or waited for a model slot (needs_llm_wait, ...);
#  * a blocking acquire() on an admission semaphore anywhere but the controller (admission.py), which
#    only ever takes its BoundedSemaphores with blocking=False. The per-lease release flag in
#    admission_values.py is a Lock taken with blocking=False, which is allowed.
# Usage: scripts/stale_terms.sh [DIR]   (default: the package next to this script)
set -euo pipefail
root=${1:-"$(cd "$(dirname "$0")/.." && pwd)/threadsched"}
status=0

stale=$(grep -rnE --include='*.py' '\b(needs_llm_wait|held_llm_wait|max_llm_wait_tasks)\b' "$root" || true)
if [[ -n "$stale" ]]; then
    echo "stale_terms: worker-side scheduler-wait names in production code:" >&2
    echo "$stale" >&2
    status=1
fi

# Every .acquire( outside admission.py must be non-blocking; docstrings/comments mentioning it are fine.
# Request admission (requests/) is a different layer: a running task waits there for a *request* permit
# by design (DESIGN §2), never for scheduler capacity, so its admission.acquire(...) calls are allowed.
# The dispatcher thread sleeps on its own wake-up lock (dispatcher.py ``self._wake``): not a worker, not capacity.
blocking=$(grep -rnE --include='*.py' '\.acquire\(' "$root" \
    | grep -vE '^[^:]*/admission\.py:' \
    | grep -vE '^[^:]*/requests/[a-z_]+\.py:[0-9]+:.*\b_?admission\.acquire\(' \
    | grep -vE '^[^:]*/dispatcher\.py:[0-9]+:.*\bself\._wake\.acquire\(' \
    | grep -vE 'acquire\(blocking=False\)|acquire\(False\)' \
    | grep -vE ':[0-9]+:\s*(#|""")' || true)
if [[ -n "$blocking" ]]; then
    echo "stale_terms: blocking acquire() outside the admission controller:" >&2
    echo "$blocking" >&2
    status=1
fi

# Inside the controller, semaphores are only taken without blocking.
controller_blocking=$(grep -nE '\.acquire\(' "$root/admission.py" | grep -vE 'blocking=False|acquire\(False\)' \
    | grep -vE ':[0-9]+:\s*(#|""")' || true)
if [[ -n "$controller_blocking" ]]; then
    echo "stale_terms: a blocking semaphore acquire() inside the controller:" >&2
    echo "$controller_blocking" >&2
    status=1
fi

if [[ $status -eq 0 ]]; then
    echo "stale_terms: ok ($root)"
fi
exit $status
