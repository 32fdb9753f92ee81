"""The parse's workers and DuckDB's threads are sized by the CPUs the job may use (its affinity and
its cgroup CPU quota), not by the machine's count."""
from __future__ import annotations

import os
from pathlib import Path

import duckdb
import pytest

from nelo_etl import staging
from nelo_etl.config import load_config
from nelo_etl.cpus import cgroup_cpu_quota, usable_cpus
from nelo_etl.db import connect
from nelo_etl.simulate import SimConfig, Simulator, write_batches

needs_two = pytest.mark.skipif(not hasattr(os, "sched_setaffinity") or len(os.sched_getaffinity(0)) < 2,
                               reason="needs a CPU affinity of at least two CPUs to narrow")


@pytest.fixture
def one_cpu():
    """The test's thread pinned to one of its CPUs (as `taskset -c N` pins a cron job; threads
    started meanwhile inherit it), then given its affinity back."""
    allowed = os.sched_getaffinity(0)
    os.sched_setaffinity(0, {min(allowed)})
    try:
        yield
    finally:
        os.sched_setaffinity(0, allowed)


def _cgroups(tmp_path: Path, proc: str, files: dict[str, str | bytes]) -> tuple[Path, Path]:
    """A cgroup mount under tmp_path with ``files`` (path -> content), and a /proc/self/cgroup."""
    root = tmp_path / "cgroup"
    for name, content in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(content if isinstance(content, bytes) else content.encode())
    (tmp_path / "proc_cgroup").write_text(proc)
    return root, tmp_path / "proc_cgroup"


@needs_two
def test_usable_cpus_follow_the_affinity_not_the_machines_count(one_cpu):
    assert usable_cpus() == 1
    assert (os.cpu_count() or 1) >= 2            # what the parse used to size its workers by


def test_a_systemd_units_cpu_quota_on_its_own_cgroup_or_a_parent_counts_cgroup_v2(tmp_path):
    """systemd's CPUQuota=150% writes "150000 100000" to the unit's own cpu.max, below the root:
    a reader of the mount's root alone (loky's) misses it. A parent's quota binds as well."""
    proc = "0::/system.slice/nelo-etl.service\n"
    root, pc = _cgroups(tmp_path, proc, {"cgroup.controllers": "cpu memory pids\n",
                                         "system.slice/nelo-etl.service/cpu.max": "150000 100000\n",
                                         "system.slice/cpu.max": "max 100000\n"})
    assert cgroup_cpu_quota(root, pc) == 1.5
    assert usable_cpus(root, pc) == min(2, len(os.sched_getaffinity(0)))          # rounded up
    (root / "system.slice/cpu.max").write_text("50000 100000\n")                    # the parent's is tighter
    assert cgroup_cpu_quota(root, pc) == 0.5 and usable_cpus(root, pc) == 1
    (root / "system.slice/nelo-etl.service/cpu.max").write_text("max 100000\n")
    (root / "system.slice/cpu.max").write_text("max 100000\n")
    assert cgroup_cpu_quota(root, pc) is None                                       # no quota anywhere


def test_a_hybrid_hosts_v2_hierarchy_is_read_under_unified_and_a_pure_v2_mount_is_not(tmp_path):
    """Beside v1 (hybrid), v2 is mounted at unified/; on a pure v2 mount, unified/ is only a cgroup
    of that name, not the job's."""
    root, pc = _cgroups(tmp_path, "0::/system.slice/x.service\n",
                        {"unified/cgroup.controllers": "cpu\n",
                         "unified/system.slice/x.service/cpu.max": "100000 100000\n"})
    assert cgroup_cpu_quota(root, pc) == 1.0
    (root / "cgroup.controllers").write_text("cpu\n")          # now a pure v2 mount
    assert cgroup_cpu_quota(root, pc) is None


def test_a_cgroup_v1_cpu_quota_counts_and_minus_one_means_none(tmp_path):
    proc = "5:memory:/x\n4:cpu,cpuacct:/system.slice/nelo-etl.service\n0::/system.slice/nelo-etl.service\n"
    unit = "cpu,cpuacct/system.slice/nelo-etl.service"
    root, pc = _cgroups(tmp_path, proc, {f"{unit}/cpu.cfs_quota_us": "100000\n",
                                         f"{unit}/cpu.cfs_period_us": "100000\n"})
    assert cgroup_cpu_quota(root, pc) == 1.0 and usable_cpus(root, pc) == 1
    (root / unit / "cpu.cfs_quota_us").write_text("-1\n")
    assert cgroup_cpu_quota(root, pc) is None


def test_a_cgroup_v1_quota_on_a_parent_under_a_mount_named_cpu_counts(tmp_path):
    """Some hosts mount the controllers at cpu/ (cpu,cpuacct a link to it); a slice's quota binds
    the units below it."""
    proc = "4:cpu,cpuacct:/system.slice/nelo-etl.service\n"
    root, pc = _cgroups(tmp_path, proc, {"cpu/system.slice/cpu.cfs_quota_us": "250000\n",
                                         "cpu/system.slice/cpu.cfs_period_us": "100000\n",
                                         "cpu/system.slice/nelo-etl.service/cpu.cfs_quota_us": "-1\n",
                                         "cpu/system.slice/nelo-etl.service/cpu.cfs_period_us": "100000\n"})
    assert cgroup_cpu_quota(root, pc) == 2.5


@pytest.mark.parametrize("proc, files", [
    ("", {}),                                                              # no cgroups at all
    ("0::/a\n", {"a/cpu.max": "lots 100000\n"}),                           # garbage in the file
    ("0::/a\n", {"a/cpu.max": "0 100000\n"}),                              # a zero quota
    ("0::/a\n", {"a/cpu.max": ""}),                                         # empty (seen in containers: loky#478)
    ("0::/a\n", {"a/cpu.max": b"\xff\xfe 100000\n"}),                      # not text
    ("0::/a\n", {"a/cpu.max": "9" * 400 + " 1\n"}),                        # too large for a float
    ("0::/a\n", {"a/cpu.max/x": "50000 100000\n"}),                        # a folder named cpu.max
    ("1:name=systemd:/a\n", {"a/cpu.max": "50000 100000\n"}),              # a named hierarchy, no cpu
    ("not a cgroup line\n0::/../../a\n", {"cpu.max": "50000 100000\n",    # outside the namespace:
                                          "a/cpu.max": "50000 100000\n"}),  # neither root nor a/ is its
])
def test_cgroup_files_that_say_nothing_usable_leave_the_affinity(tmp_path, proc, files):
    root, pc = _cgroups(tmp_path, proc, {"cgroup.controllers": "cpu memory\n", **files})      # a v2 mount
    assert cgroup_cpu_quota(root, pc) is None
    assert usable_cpus(root, pc) == len(os.sched_getaffinity(0))
    assert usable_cpus(tmp_path / "none", tmp_path / "no_proc_file") == len(os.sched_getaffinity(0))


def test_the_machines_own_cgroups_are_read_without_error():
    """Whatever this machine's /proc/self/cgroup says, the count is between 1 and the affinity."""
    assert 1 <= usable_cpus() <= len(os.sched_getaffinity(0))


@needs_two
def test_the_warehouse_connection_runs_one_duckdb_thread_for_a_job_allowed_one_cpu(tmp_path, one_cpu):
    con = connect(tmp_path / "w.duckdb", 5.0)
    try:
        assert con.execute("SELECT current_setting('threads')").fetchall()[0][0] == 1
    finally:
        con.close()
    plain = duckdb.connect()                     # DuckDB's own default ignores the affinity
    try:
        assert plain.execute("SELECT current_setting('threads')").fetchall()[0][0] > 1
    finally:
        plain.close()


@needs_two
def test_the_contract_parser_starts_no_worker_processes_for_a_job_allowed_one_cpu(project, tmp_path, monkeypatch,
                                                                                 one_cpu):
    """Pinned to one CPU, a file big enough for parallel parsing is parsed in this process (before:
    one spawned worker per CPU of the machine); the rows are those of a serial parse either way."""
    cfg = load_config(project / "config.json")
    messages = Simulator(SimConfig.chaos(events=300, seed=3, bad_rate=0.02)).messages()
    (path,) = write_batches(messages, str(tmp_path), batches=1)
    monkeypatch.setattr(staging, "PARALLEL_MIN_BYTES", 1)          # every file counts as big
    pools: list[int] = []
    real = staging._parse_in_parallel

    def recorded(lines, pattern, dead_letters, workers):
        pools.append(workers)
        return real(lines, pattern, dead_letters, workers)

    monkeypatch.setattr(staging, "_parse_in_parallel", recorded)
    con = duckdb.connect()
    try:
        staging.create_parse_tables(con)
        dead: list = []
        staging.parse_with_python(con, cfg, Path(path), dead)
        rows = con.execute("SELECT count(*) FROM parsed_items").fetchall()[0][0]
    finally:
        con.close()
    assert pools == [] and rows > 0
