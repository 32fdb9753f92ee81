"""Overlap: two etl.py started together, and a run that outlasts its slot: one works, the other
exits with the "skipped" code; nothing is lost or doubled."""
from __future__ import annotations

import collections
import os
import subprocess
import sys
import time

from nelo_etl import cli
from nelo_etl.localsqs import CREDENTIALS

from ..conftest import ROOT
from ..test_etl import drain, fast_queue_config, ids_in, send
import pytest

#: subprocesses, servers, browsers or many loads: not in the fast subset (make test-fast)
pytestmark = pytest.mark.slow


def start_etl(project, endpoint, url, **env):
    full = dict(os.environ, **CREDENTIALS, SQS_QUEUE_URL=url, AWS_ENDPOINT_URL=endpoint, **env)
    full.pop("NELO_CRASH_AT", None)
    return subprocess.Popen([sys.executable, str(ROOT / "etl.py"), "--config", str(project / "config.json"),
                             "--no-process"], env=full, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_a_run_that_outlasts_its_slot_makes_the_next_one_skip(project, queue):
    sqs, url = queue
    fast_queue_config(project, visibility=30)
    sent = send(sqs, url, 50)
    slow = start_etl(project, sqs.meta.endpoint_url, url, NELO_PAUSE_AT="while_polling:4")
    raw = project / "work" / "raw.jsonl.part"
    deadline = time.monotonic() + 60
    while not (raw.exists() and raw.stat().st_size) and time.monotonic() < deadline:
        time.sleep(0.05)                                 # polling has begun: the lock is held
    assert raw.exists(), "the slow run never started polling"
    quick = start_etl(project, sqs.meta.endpoint_url, url)
    q_out, q_err = quick.communicate(timeout=60)
    s_out, s_err = slow.communicate(timeout=120)
    assert quick.returncode == cli.EXIT_SKIPPED and q_err.startswith("skipped:") and q_out == ""
    assert slow.returncode == 0, s_err
    drain(project, sqs.meta.endpoint_url, url, sqs, runs=3)
    assert collections.Counter(ids_in(project / "staging")) == collections.Counter(sent)


def test_two_runs_started_together(project, queue):
    sqs, url = queue
    fast_queue_config(project, visibility=30)
    sent = send(sqs, url, 50)
    runs = [start_etl(project, sqs.meta.endpoint_url, url) for _ in range(2)]
    codes = sorted(p.wait(timeout=120) for p in runs)
    assert codes in ([0, 0], [0, cli.EXIT_SKIPPED])       # overlapping: one skips; or one after the other
    drain(project, sqs.meta.endpoint_url, url, sqs, runs=3)
    assert collections.Counter(ids_in(project / "staging")) == collections.Counter(sent)
