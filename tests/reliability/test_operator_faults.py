"""Operator-side faults (issue 12): a hostile .env, lone surrogates from the server, a MessageId
seen before with another body, SIGTERM mid-poll, a hung lock holder, a job under a non-UTC TZ."""
from __future__ import annotations

import collections
import json
import os
import signal
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import duckdb
import pytest

from nelo_etl import cli
from nelo_etl.localsqs import CREDENTIALS

from ..conftest import ROOT, copy_samples, write_config
from ..fault_proxy import FaultProxy
from ..test_etl import etl_env, fast_queue_config, ids_in, send

#: subprocesses, servers, browsers or many loads: not in the fast subset (make test-fast)
pytestmark = pytest.mark.slow


def etl(project: Path, env: dict[str, str], *args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(ROOT / "etl.py"), "--config", str(project / "config.json"), *args],
                          env=env, capture_output=True, text=True, timeout=300, cwd=cwd)


# ---------------------------------------------------------------------------------------------
# .env

def test_a_dotenv_in_the_working_directory_is_never_read(project, queue, tmp_path_factory):
    """A .env in the cwd pointing AWS_CONFIG_FILE at a credential_process (which would run any
    command as the job's user) and redirecting the endpoint changes nothing."""
    sqs, url = queue
    fast_queue_config(project, visibility=30)
    send(sqs, url, 20)
    cwd = tmp_path_factory.mktemp("hostile-cwd")
    marker = cwd / "pwned"
    (cwd / "aws-config").write_text(f"[default]\ncredential_process = /bin/sh -c 'id > {marker}; echo {{}}'\n")
    (cwd / ".env").write_text(f"AWS_CONFIG_FILE={cwd / 'aws-config'}\nAWS_ENDPOINT_URL=http://127.0.0.1:9\n")
    env = etl_env(sqs.meta.endpoint_url, url)
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_ENDPOINT_URL"):
        env.pop(name)       # so boto3 would use a credential_process, and a .env endpoint, if one were read
    write_config(project, queue=dict(json.loads((project / "config.json").read_text())["queue"],
                                     endpoint_url=sqs.meta.endpoint_url))
    no_creds = etl(project, env, "--no-process", cwd=cwd)
    assert no_creds.returncode == cli.EXIT_FAILED and "NoCredentialsError" in no_creds.stderr
    assert not marker.exists()                                   # the credential_process never ran
    # the .env beside the config is read, but only for the keys .env.example lists
    (project / ".env").write_text("AWS_ACCESS_KEY_ID=testing\nAWS_SECRET_ACCESS_KEY=testing\n"
                                  f"AWS_CONFIG_FILE={cwd / 'aws-config'}\n")
    os.chmod(project / ".env", 0o600)
    out = etl(project, env, "--no-process", cwd=cwd)
    assert out.returncode == 0, out.stderr
    assert not marker.exists()
    assert len(ids_in(project / "staging")) == 20                # the real endpoint was used
    log = (project / "logs" / "etl.log").read_text()
    assert "ignored keys .env.example does not list: AWS_CONFIG_FILE" in log


@pytest.mark.parametrize("fault", ["group-writable", "world-writable", "other-owner"])
def test_an_unsafe_dotenv_is_refused_in_one_line(project, fault):
    env_file = project / ".env"
    env_file.write_text("SQS_QUEUE_URL=http://127.0.0.1:9/q\n")
    os.chmod(env_file, {"group-writable": 0o620, "world-writable": 0o602}.get(fault, 0o600))
    if fault == "other-owner":
        if os.getuid() != 0:
            pytest.skip("changing a file's owner needs root")
        os.chown(env_file, 4242, 4242)
    out = subprocess.run([sys.executable, str(ROOT / "etl.py"), "--config", str(project / "config.json")],
                         env={k: v for k, v in os.environ.items() if k != "SQS_QUEUE_URL"},
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == cli.EXIT_CONFIG, out.stderr
    assert out.stderr.count("\n") == 1 and "refusing a .env" in out.stderr
    assert not (project / "work").exists()                       # nothing was touched


# ---------------------------------------------------------------------------------------------
# lone surrogates

def test_lone_surrogates_from_the_server_are_dead_lettered_and_recovery_never_loops(project, queue, moto_server):
    """A server (here a proxy) delivering U+DCFF and U+D800 in bodies: the messages are written,
    dead-lettered as invalid_utf8 by staging, and every run after a crash at any step succeeds."""
    sqs, url = queue
    fast_queue_config(project, visibility=30)
    good = send(sqs, url, 30)
    for marker in ("XSURROGATEDCFFX", "XSURROGATED800X"):
        sqs.send_message(QueueUrl=url, MessageBody=json.dumps(
            {"event_timestamp": 1760716800000000, "user_id": marker, "event_name": "view_item",
             "platform": "IOS", "items": "[]"}))
    proxy = FaultProxy(moto_server.url).start()
    proxy.rewrite = lambda data: (data.replace(b"XSURROGATEDCFFX", b"\\udcff")
                                  .replace(b"XSURROGATED800X", b"\\ud800"))
    try:
        env = etl_env(proxy.url, url)
        crashed = etl(project, dict(env, NELO_CRASH_AT="after_raw_write"), "--no-process")
        assert crashed.returncode == -9
        assert (project / "work" / "raw.jsonl.part").read_bytes().count(b"\xff") == 1   # as a crash leaves it
        runs = [etl(project, env, "--json") for _ in range(2)]     # recovery, then a normal run
    finally:
        proxy.stop()
    for out in runs:
        assert out.returncode == 0, out.stderr
    first = json.loads(runs[0].stdout)
    assert first["recovered_batches"] and first["status"] == "done"
    assert list((project / "work").glob("processing_batch_*")) == [] and list((project / "staging").iterdir()) == []
    con = duckdb.connect(str(project / "warehouse" / "nelo.duckdb"), read_only=True)
    try:
        reasons = con.execute("SELECT reason, count(*) FROM dead_letter_messages GROUP BY 1").fetchall()
        received, dead = con.execute("SELECT sum(received), sum(dead_lettered) FROM etl_batches "
                                     "WHERE status = 'committed'").fetchall()[0]
    finally:
        con.close()
    assert dict(reasons) == {"invalid_utf8": 2}
    assert (received, dead) == (len(good) + 2, 2)          # every message once: 30 good, 2 dead letters


# ---------------------------------------------------------------------------------------------
# a MessageId seen before with another body

def test_a_message_id_seen_with_another_body_is_written_and_counted(project, queue):
    import diskcache

    from nelo_etl.ingest import body_digest

    sqs, url = queue
    fast_queue_config(project, visibility=30)
    ids = send(sqs, url, 12)
    bodies = {m["MessageId"]: m["Body"] for m in _peek(sqs, url)}
    # an earlier run saw ids[0] with another body, ids[1] with this body, ids[2] before bodies were hashed
    with diskcache.Cache(str(project / "work" / "seen_messages")) as seen:
        seen.set(ids[0], body_digest(bodies[ids[0]] + " "), expire=3600)
        seen.set(ids[1], body_digest(bodies[ids[1]]), expire=3600)
        seen.set(ids[2], True, expire=3600)
    out = etl(project, etl_env(sqs.meta.endpoint_url, url), "--no-process", "--json")
    assert out.returncode == 0, out.stderr
    summary = json.loads(out.stdout)
    assert (summary["received"], summary["conflicts"], summary["skipped_seen"], summary["new"]) == (12, 1, 2, 10)
    staged = ids_in(project / "staging")
    assert ids[0] in staged and ids[1] not in staged and ids[2] not in staged
    assert "conflicts=1" in (project / "logs" / "etl.log").read_text()


def _peek(sqs, url):
    msgs = []
    while True:
        got = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, VisibilityTimeout=5).get("Messages", [])
        if not got:
            break
        msgs += got
    for m in msgs:       # back on the queue at once
        sqs.change_message_visibility(QueueUrl=url, ReceiptHandle=m["ReceiptHandle"], VisibilityTimeout=0)
    return msgs


# ---------------------------------------------------------------------------------------------
# SIGTERM

def test_sigterm_mid_poll_stops_at_a_safe_point_and_exits_143(project, queue):
    sqs, url = queue
    fast_queue_config(project, visibility=30)
    sent = send(sqs, url, 60)
    env = etl_env(sqs.meta.endpoint_url, url, NELO_PAUSE_AT="while_polling:3")
    proc = subprocess.Popen([sys.executable, str(ROOT / "etl.py"), "--config", str(project / "config.json"), "--json"],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    raw = project / "work" / "raw.jsonl.part"
    deadline = time.monotonic() + 60
    while not (raw.exists() and raw.stat().st_size) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert raw.exists(), "never started polling"
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == cli.EXIT_TERMINATED == 143, err
    summary = json.loads(out)
    assert summary["status"] == "terminated" and summary["stopped"] == "terminated"
    got = summary["new"]
    assert 0 < got < 60 and summary["deleted"] == got          # one call's worth, sealed, then deleted
    assert "Traceback" not in err and not raw.exists()
    assert len(ids_in(project / "archive")) == got == len(ids_in(project / "staging"))   # not processed
    attrs = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]
    assert int(attrs["ApproximateNumberOfMessages"]) + int(attrs["ApproximateNumberOfMessagesNotVisible"]) == 60 - got
    nxt = etl(project, etl_env(sqs.meta.endpoint_url, url), "--no-process")
    assert nxt.returncode == 0, nxt.stderr
    assert collections.Counter(ids_in(project / "archive")) == collections.Counter(sent)


# ---------------------------------------------------------------------------------------------
# a hung lock holder

def test_a_lock_held_longer_than_a_run_can_last_is_an_error(project, queue):
    sqs, url = queue
    # a run can last 2 x (1 + 0) + 2 x 0.5 = 3 s with these settings
    fast_queue_config(project, visibility=30, max_seconds_per_run=1.0)
    write_config(project, db_lock_timeout_seconds=0.5)
    send(sqs, url, 20)
    env = etl_env(sqs.meta.endpoint_url, url)
    hung = subprocess.Popen([sys.executable, str(ROOT / "etl.py"), "--config", str(project / "config.json"),
                             "--no-process"], env=dict(env, NELO_PAUSE_AT="while_polling:9"),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        owner = project / "work" / "etl.lock.owner"
        deadline = time.monotonic() + 60
        while not owner.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        early = etl(project, env, "--no-process")
        assert early.returncode == cli.EXIT_SKIPPED, early.stderr       # young: a slow run, skip
        assert f"pid {hung.pid}" in early.stderr
        time.sleep(3.5)
        late = etl(project, env, "--no-process", "--json")
        assert late.returncode == cli.EXIT_FAILED
        assert late.stderr.count("\n") == 1 and f"pid {hung.pid}" in late.stderr and "since" in late.stderr
        assert "longer than a run can last: 3 s" in late.stderr
        assert json.loads(late.stdout)["status"] == "failed"
    finally:
        hung.kill()
        hung.communicate()


# ---------------------------------------------------------------------------------------------
# time zones

def test_ledger_timestamps_are_utc_whatever_tz_says(project):
    copy_samples(project / "staging")
    before = datetime.now(timezone.utc).replace(tzinfo=None)
    out = subprocess.run([sys.executable, str(ROOT / "process_staging.py"), "--config", str(project / "config.json")],
                         env=dict(os.environ, TZ="America/Mexico_City"), capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    after = datetime.now(timezone.utc).replace(tzinfo=None)
    con = duckdb.connect(str(project / "warehouse" / "nelo.duckdb"), read_only=True)
    try:
        rows = con.execute("SELECT started_ts, finished_ts FROM etl_batches").fetchall()
        (stamp,) = con.execute("SELECT upgraded_ts FROM schema_version").fetchall()[0]
    finally:
        con.close()
    assert rows
    for started, finished in rows:
        assert before.replace(microsecond=0) <= started <= finished <= after, (started, finished, before, after)
    assert before.replace(microsecond=0) <= stamp <= after
