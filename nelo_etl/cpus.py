"""How many CPUs this process may use: what sizes the parse's workers, and what the bench's
budgets divide by.

``os.cpu_count()`` counts the machine's CPUs. A job pinned to fewer (``taskset``, a cpuset) or
given a CPU quota (a container's ``--cpus``, a systemd ``CPUQuota``) would then start a worker per
CPU it cannot use: on a 64-CPU host the contract parser would spawn 64 processes for a job
allowed two. loky's ``cpu_count`` (joblib's) takes the least of the machine's count, the
affinity, the cgroup CPU quota (v1 and v2) and ``LOKY_MAX_CPU_COUNT``, an operator's cap.
"""
from __future__ import annotations

import logging
import os

log = logging.getLogger(__name__)


def usable_cpus() -> int:
    """The CPUs this process may use (at least 1). A ``LOKY_MAX_CPU_COUNT`` that is not a whole
    number is ignored with a warning: a bad cap must not stop the load."""
    from loky import cpu_count      # imported here: 50 ms of imports, only where workers are sized

    try:
        return max(1, cpu_count())
    except ValueError:
        log.warning("LOKY_MAX_CPU_COUNT=%r is not a whole number: ignored", os.environ.get("LOKY_MAX_CPU_COUNT"))
        saved = os.environ.pop("LOKY_MAX_CPU_COUNT")
        try:
            return max(1, cpu_count())
        finally:
            os.environ["LOKY_MAX_CPU_COUNT"] = saved
