"""How many CPUs this process may use: what sizes the parse's workers and DuckDB's threads, and
what the bench's budgets divide by.

``os.cpu_count()`` counts the machine's CPUs. A job pinned to fewer (``taskset``, a cpuset) or
given a CPU quota (systemd's ``CPUQuota=``, a container's ``--cpus``) would start a worker per CPU
it cannot use: on a 64-CPU host the contract parser would spawn 64 processes for a job allowed
two. Read by hand rather than with loky's (joblib's) count, which reads only the cgroup mount's
root: it sees a container's quota but not a systemd unit's (joblib/loky#634), the way this job is
deployed (deploy/nelo-etl.service).
"""
from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Callable

#: where the cgroup hierarchies are mounted, and the file naming this process's cgroups
CGROUP_ROOT = Path("/sys/fs/cgroup")
PROC_CGROUP = Path("/proc/self/cgroup")


def usable_cpus(cgroup_root: Path = CGROUP_ROOT, proc_cgroup: Path = PROC_CGROUP) -> int:
    """The CPUs this process may run on (its affinity), lowered to its cgroup CPU quota rounded
    up when one is set on its cgroup or a parent; at least 1. Never raises: a source it cannot
    read does not count."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):       # not Linux
        cpus = os.cpu_count() or 1
    quota = cgroup_cpu_quota(cgroup_root, proc_cgroup)
    if quota is not None:
        cpus = min(cpus, math.ceil(quota))
    return max(1, cpus)


def cgroup_cpu_quota(cgroup_root: Path = CGROUP_ROOT, proc_cgroup: Path = PROC_CGROUP) -> float | None:
    """The tightest CPU quota (in CPUs: quota / period) on this process's cgroups and their
    parents, cgroup v2 (``cpu.max``) or v1 (``cpu.cfs_quota_us`` / ``cpu.cfs_period_us``), or
    None when none is set or none can be read."""
    try:
        lines = proc_cgroup.read_text().splitlines()
    except (OSError, UnicodeDecodeError):
        return None
    limits: list[float] = []
    for line in lines:
        fields = line.split(":", 2)          # hierarchy-id:controllers:path
        if len(fields) != 3:
            continue
        controllers, path = fields[1], fields[2].strip()
        if controllers == "":                # v2: the mount itself, or unified/ beside v1 (hybrid)
            v2 = cgroup_root if (cgroup_root / "cgroup.controllers").exists() else cgroup_root / "unified"
            limits += _along(v2, path, _v2_quota)
        elif "cpu" in controllers.split(","):
            for mount in {cgroup_root / controllers, cgroup_root / "cpu"}:
                limits += _along(mount, path, _v1_quota)
    return min(limits) if limits else None


def _along(mount: Path, path: str, read: Callable[[Path], float | None]) -> list[float]:
    """The quotas ``read`` finds in ``path``'s folder under ``mount`` and in each parent up to the
    mount. A cgroup outside the process's cgroup namespace shows as ``/../..``: no folder under
    the mount is its, so it gives none."""
    parts = [p for p in path.split("/") if p not in ("", ".")]
    if ".." in parts:
        return []
    found = []
    for depth in range(len(parts), -1, -1):
        quota = read(mount.joinpath(*parts[:depth]))
        if quota is not None:
            found.append(quota)
    return found


def _v2_quota(folder: Path) -> float | None:
    """``cpu.max``: "<quota> <period>" in microseconds, or "max <period>" for none."""
    try:
        quota, period = (folder / "cpu.max").read_text().split()[:2]
        return None if quota == "max" else _ratio(quota, period)
    except (OSError, ValueError, UnicodeDecodeError, ArithmeticError):
        return None


def _v1_quota(folder: Path) -> float | None:
    """``cpu.cfs_quota_us`` (-1 for none) over ``cpu.cfs_period_us``."""
    try:
        quota = (folder / "cpu.cfs_quota_us").read_text().strip()
        period = (folder / "cpu.cfs_period_us").read_text().strip()
        return _ratio(quota, period)
    except (OSError, ValueError, UnicodeDecodeError, ArithmeticError):
        return None


def _ratio(quota: str, period: str) -> float | None:
    """quota / period when both are positive whole numbers, else None (-1 means no quota).
    Numbers too large for a float raise OverflowError, which the callers count as unreadable."""
    q, p = int(quota), int(period)
    return q / p if q > 0 and p > 0 else None
