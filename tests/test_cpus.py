"""The parse's workers are sized by the CPUs the job may use, not by the machine's count."""
from __future__ import annotations

import logging
import os
from pathlib import Path

import duckdb
import pytest

from nelo_etl import staging
from nelo_etl.config import load_config
from nelo_etl.cpus import usable_cpus
from nelo_etl.simulate import SimConfig, Simulator, write_batches

needs_two = pytest.mark.skipif(not hasattr(os, "sched_setaffinity") or usable_cpus() < 2,
                               reason="needs at least two usable CPUs to narrow")


@pytest.fixture
def one_cpu():
    """This test process pinned to one of its CPUs (as `taskset -c N` pins a cron job), then given
    its affinity back."""
    allowed = os.sched_getaffinity(0)
    os.sched_setaffinity(0, {min(allowed)})
    try:
        yield
    finally:
        os.sched_setaffinity(0, allowed)


@needs_two
def test_usable_cpus_follow_the_affinity_not_the_machines_count(one_cpu):
    assert usable_cpus() == 1
    assert (os.cpu_count() or 1) >= 2            # what the parse used to size its workers by


@needs_two
def test_an_operators_cap_lowers_them_and_a_bad_cap_is_ignored_with_a_warning(monkeypatch, caplog):
    monkeypatch.delenv("LOKY_MAX_CPU_COUNT", raising=False)
    uncapped = usable_cpus()
    assert uncapped >= 2
    monkeypatch.setenv("LOKY_MAX_CPU_COUNT", "1")
    assert usable_cpus() == 1
    monkeypatch.setenv("LOKY_MAX_CPU_COUNT", "two")
    with caplog.at_level(logging.WARNING, logger="nelo_etl.cpus"):
        assert usable_cpus() == uncapped
    assert "LOKY_MAX_CPU_COUNT='two' is not a whole number: ignored" in caplog.text
    assert os.environ["LOKY_MAX_CPU_COUNT"] == "two"      # left as the operator set it


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
