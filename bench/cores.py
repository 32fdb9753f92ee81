"""How many cores the bench's budgets divide by, and how many threads DuckDB runs with: two
figures that differ once the process may use fewer CPUs than the machine has."""
from __future__ import annotations

import os


def usable_cores() -> int:
    """The CPUs this process may run on: its affinity (taskset, a cpuset), not the machine's count
    that ``os.cpu_count()`` gives. They bound the CPU seconds a wall second holds, so every budget
    of the bench divides by them. A cgroup CPU quota is not counted (this machine has none)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:          # not Linux
        return os.cpu_count() or 1


def duckdb_default_threads() -> int:
    """The threads a new DuckDB connection runs with when none is set. DuckDB sizes them from the
    machine (or a cgroup quota), not from the affinity, so this is asked, not assumed."""
    import duckdb

    con = duckdb.connect()
    try:
        return int(con.execute("SELECT current_setting('threads')").fetchall()[0][0])
    finally:
        con.close()
