"""Crash anywhere: a simulated day delivered in ticks, each followed by etl.py (ingest + process),
killed with SIGKILL at random instants and at every deterministic crash point. After recovery
runs the warehouse equals a run without faults: nothing lost, nothing counted twice."""
from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import duckdb

from nelo_etl.localsqs import CREDENTIALS
from nelo_etl.simulate import SimConfig, Simulator, write_batches

from ..conftest import ROOT
from ..silver_helpers import gold_views, load, make_project, silver_tables
from ..test_etl import fast_queue_config
import pytest

#: subprocesses, servers, browsers or many loads: not in the fast subset (make test-fast)
pytestmark = pytest.mark.slow

ETL_POINTS = ["while_polling", "after_raw_write", "after_rename", "after_publish", "before_delete"]
STAGING_POINTS = ["during_load", "before_commit"]


def test_random_and_deterministic_kills_over_a_day_lose_nothing(project, queue, tmp_path_factory):
    sqs, url = queue
    fast_queue_config(project, visibility=2)
    messages = Simulator(SimConfig.chaos(events=700, seed=21, days=1)).messages()
    ticks = [messages[i::8] for i in range(8)]          # 8 ticks of the day
    ticks = [sorted(t, key=lambda m: (m.sent_ms, m.seq)) for t in ticks]
    env = dict(os.environ, **CREDENTIALS, SQS_QUEUE_URL=url, AWS_ENDPOINT_URL=sqs.meta.endpoint_url)
    env.pop("NELO_CRASH_AT", None)
    rng = random.Random(5)
    points = ETL_POINTS + STAGING_POINTS
    kills = crash_points = 0
    for n, tick in enumerate(ticks):
        for i in range(0, len(tick), 10):
            sqs.send_message_batch(QueueUrl=url, Entries=[{"Id": str(j), "MessageBody": m.body}
                                                          for j, m in enumerate(tick[i:i + 10])])
        run_env = dict(env)
        if n < len(points):                                # every deterministic point once
            run_env["NELO_CRASH_AT"] = points[n]
        proc = subprocess.Popen([sys.executable, str(ROOT / "etl.py"), "--config", str(project / "config.json")],
                                env=run_env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        if n >= len(points) or rng.random() < 0.5:         # and random instants
            time.sleep(rng.uniform(0.3, 2.5))
            if proc.poll() is None:
                proc.send_signal(signal.SIGKILL)
                kills += 1
        code = proc.wait(timeout=120)
        crash_points += code == -9 and n < len(points)
    # recovery runs until the queue and staging/ are empty; on a busy machine a run can end
    # while messages are still in flight (invisible for the visibility timeout), so the loop
    # waits for them instead of stopping after a fixed number of runs (which compared a
    # half-recovered warehouse and failed now and then)
    deadline = time.monotonic() + 240
    drained = False
    while not drained and time.monotonic() < deadline:
        time.sleep(2.5)
        out = subprocess.run([sys.executable, str(ROOT / "etl.py"), "--config", str(project / "config.json")],
                             env=env, capture_output=True, text=True, timeout=300)
        assert out.returncode == 0, out.stderr
        attrs = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]
        drained = (attrs["ApproximateNumberOfMessages"] == attrs["ApproximateNumberOfMessagesNotVisible"] == "0"
                   and not list((project / "staging").glob("*.jsonl")))
    assert drained, "recovery runs did not drain the queue and staging/ within 240 s"
    assert kills + crash_points >= 6

    faulty = make_project(project)                         # the project's own config, as a Config
    clean = make_project(tmp_path_factory.mktemp("clean"))
    files = write_batches(messages, str(tmp_path_factory.mktemp("files")), batches=1)
    load(clean, [Path(p) for p in files])
    assert silver_tables(faulty) == silver_tables(clean)
    assert gold_views(faulty) == gold_views(clean)
    # every received message is accounted for: the processed batch files hold each message once,
    # and the ledger's committed loads add up to exactly those lines
    lines = [json.loads(l)["MessageId"] for p in (project / "processed").glob("*.jsonl")
             for l in p.read_text(encoding="utf-8").splitlines() if l.strip()]
    assert len(lines) == len(set(lines)) == len(messages)
    con = duckdb.connect(str(faulty.database_path), read_only=True)
    try:
        received = con.execute("SELECT sum(received) FROM etl_batches WHERE status = 'committed' "
                               "AND NOT is_reprocess").fetchall()[0][0]
    finally:
        con.close()
    assert received == len(lines)
    assert list((project / "staging").glob("*.jsonl")) == []
