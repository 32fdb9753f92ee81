"""etl.py against a real SQS-protocol server (moto_server on 127.0.0.1): nothing lost, nothing twice."""
from __future__ import annotations

import collections
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from botocore.exceptions import ClientError

from nelo_etl import cli
from nelo_etl.simulate import SimConfig, Simulator

from .conftest import ROOT, write_config
from .fault_proxy import FaultProxy
from nelo_etl.localsqs import CREDENTIALS, MotoServer

#: subprocesses, servers, browsers or many loads: not in the fast subset (make test-fast)
pytestmark = pytest.mark.slow

CRASH_POINTS = ["while_polling", "after_raw_write", "after_rename", "after_publish", "before_delete"]


def fast_queue_config(project: Path, visibility: int = 2, **queue: object) -> Path:
    settings = {"region": "us-east-1", "wait_time_seconds": 0, "visibility_timeout_seconds": visibility,
                "max_messages_per_run": 50000, "max_seconds_per_run": 120.0}
    settings.update(queue)
    return write_config(project, queue=settings)


def send(sqs, url: str, n: int, seed: int = 1) -> list[str]:
    """Send the bodies of n simulated messages; returns the MessageIds the server gave them."""
    bodies = [m.body for m in Simulator(SimConfig(events=n, seed=seed)).messages()[:n]]
    ids = []
    for i in range(0, len(bodies), 10):
        resp = sqs.send_message_batch(QueueUrl=url, Entries=[
            {"Id": str(j), "MessageBody": b} for j, b in enumerate(bodies[i:i + 10])])
        assert not resp.get("Failed")
        ids += [ok["MessageId"] for ok in sorted(resp["Successful"], key=lambda r: int(r["Id"]))]
    return ids


def run_etl(project: Path, endpoint: str, queue_url: str, *args: str, env: dict | None = None,
            creds: dict | None = None) -> subprocess.CompletedProcess:
    full_env = dict(os.environ, **CREDENTIALS, SQS_QUEUE_URL=queue_url, AWS_ENDPOINT_URL=endpoint, **(env or {}))
    full_env.update(creds or {})
    full_env.pop("NELO_CRASH_AT", None) if not env or "NELO_CRASH_AT" not in env else None
    return subprocess.run([sys.executable, str(ROOT / "etl.py"), "--config", str(project / "config.json"),
                           "--no-process", *args], env=full_env, capture_output=True, text=True, timeout=300)


def drain(project: Path, endpoint: str, url: str, sqs, runs: int = 5) -> None:
    """Run etl.py until the queue holds nothing, visible or in flight (a run stops early when
    only redeliveries come back, so a short visibility timeout can leave work for the next)."""
    for _ in range(runs):
        time.sleep(2.5)
        out = run_etl(project, endpoint, url)
        assert out.returncode == 0, out.stderr
        attrs = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]
        if attrs["ApproximateNumberOfMessages"] == attrs["ApproximateNumberOfMessagesNotVisible"] == "0":
            return
    raise AssertionError(f"queue not drained after {runs} runs")


def ids_in(folder: Path) -> list[str]:
    return [json.loads(line)["MessageId"] for p in sorted(folder.glob("processing_batch_*.jsonl"))
            for line in p.read_text(encoding="utf-8").splitlines() if line.strip()]


def test_drains_a_queue_into_one_batch_staged_and_archived(project, queue):
    sqs, url = queue
    fast_queue_config(project, visibility=30)
    sent = send(sqs, url, 300)
    out = run_etl(project, sqs.meta.endpoint_url, url, "--json")
    assert out.returncode == 0, out.stderr
    summary = json.loads(out.stdout.strip().splitlines()[-1])
    assert (summary["received"], summary["new"], summary["deleted"], summary["skipped_seen"]) == (300, 300, 300, 0)
    (staged,) = list((project / "staging").glob("processing_batch_*.jsonl"))
    (archived,) = list((project / "archive").glob("processing_batch_*.jsonl"))
    assert staged.name == archived.name == summary["batch_file"]
    assert staged.read_bytes() == archived.read_bytes()
    assert sorted(ids_in(project / "staging")) == sorted(sent)
    first = json.loads(staged.read_text(encoding="utf-8").splitlines()[0])
    assert set(first) == {"MessageId", "Attributes", "Body"} and "SentTimestamp" in first["Attributes"]
    assert staged.stat().st_mode & 0o077 == 0                     # owner-only: it holds user ids
    assert list((project / "work").glob("processing_batch_*")) == []
    attrs = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]
    assert attrs["ApproximateNumberOfMessages"] == "0" and attrs["ApproximateNumberOfMessagesNotVisible"] == "0"
    assert (project / "logs" / "etl.log").exists()


def test_empty_queue_writes_nothing_and_exits_0(project, queue):
    sqs, url = queue
    fast_queue_config(project)
    out = run_etl(project, sqs.meta.endpoint_url, url)
    assert out.returncode == 0, out.stderr
    assert "received=0 new=0" in out.stdout and "batch=-" in out.stdout
    assert list((project / "staging").iterdir()) == [] and list((project / "archive").iterdir()) == []


def test_lock_held_means_skipped_with_its_own_exit_code(project, queue):
    from filelock import FileLock

    sqs, url = queue
    fast_queue_config(project)
    send(sqs, url, 20)
    (project / "work").mkdir()
    with FileLock(str(project / "work" / "etl.lock"), timeout=0):
        out = run_etl(project, sqs.meta.endpoint_url, url)
    assert out.returncode == cli.EXIT_SKIPPED == 75
    assert out.stderr.startswith("skipped:") and out.stderr.count("\n") == 1
    assert list((project / "staging").iterdir()) == []
    assert run_etl(project, sqs.meta.endpoint_url, url).returncode == 0     # the lock is free again
    assert len(ids_in(project / "staging")) == 20


def test_dry_run_reads_and_writes_nothing(project, queue):
    sqs, url = queue
    fast_queue_config(project)
    send(sqs, url, 30)
    out = run_etl(project, sqs.meta.endpoint_url, url, "--dry-run")
    assert out.returncode == 0, out.stderr
    assert "~30 visible" in out.stdout
    assert list((project / "staging").iterdir()) == []
    attrs = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["ApproximateNumberOfMessages"])["Attributes"]
    assert attrs["ApproximateNumberOfMessages"] == "30"


def test_missing_queue_url_is_a_config_error(project):
    env = {k: v for k, v in os.environ.items() if k != "SQS_QUEUE_URL"}
    out = subprocess.run([sys.executable, str(ROOT / "etl.py"), "--config", str(project / "config.json")],
                         env=env, capture_output=True, text=True)
    assert out.returncode == 2 and "SQS_QUEUE_URL" in out.stderr and out.stderr.count("\n") == 1


@pytest.mark.parametrize("point", CRASH_POINTS)
def test_kill_9_at_any_point_loses_nothing_and_writes_nothing_twice(project, queue, point):
    sqs, url = queue
    fast_queue_config(project, visibility=2)
    sent = send(sqs, url, 120)
    crashed = run_etl(project, sqs.meta.endpoint_url, url, env={"NELO_CRASH_AT": point})
    assert crashed.returncode == -9, (point, crashed.stderr)
    drain(project, sqs.meta.endpoint_url, url, sqs)       # recovery, then the redeliveries
    staged, archived = ids_in(project / "staging"), ids_in(project / "archive")
    assert sorted(staged) == sorted(archived) == sorted(sent), point      # every message, none twice
    assert not (project / "work" / "raw.jsonl.part").exists()


def test_server_vanishing_mid_run_keeps_what_was_received(project, queue, moto_server):
    sqs, url = queue
    fast_queue_config(project, visibility=2)
    sent = send(sqs, url, 200)
    proxy = FaultProxy(moto_server.url).start()
    try:
        proxy.fail_after, proxy.fail_mode = 5, "vanish"        # a few receives, then silence
        out = run_etl(project, proxy.url, url)
        assert out.returncode == cli.EXIT_FAILED
        assert out.stderr.startswith("error: queue failure") and out.stderr.count("\n") == 1
        first = ids_in(project / "staging")
        assert 0 < len(first) < 200 and len(set(first)) == len(first)
        proxy.mode, proxy.fail_after = "pass", None               # the server is back
        drain(project, proxy.url, url, sqs)
    finally:
        proxy.stop()
    assert sorted(ids_in(project / "staging")) == sorted(sent)


@pytest.fixture(scope="module")
def iam_server():
    """A moto server that enforces IAM after its first 6 actions (the test's setup)."""
    server = MotoServer({"INITIAL_NO_AUTH_ACTION_COUNT": "6"}).start()
    yield server
    server.stop()


def test_redelivery_without_delete_permission(project, iam_server):
    import boto3

    iam = boto3.client("iam", endpoint_url=iam_server.url, region_name="us-east-1",
                       aws_access_key_id="testing", aws_secret_access_key="testing")
    iam.create_user(UserName="consumer")
    iam.put_user_policy(UserName="consumer", PolicyName="no-delete", PolicyDocument=json.dumps({
        "Version": "2012-10-17", "Statement": [
            {"Effect": "Allow", "Action": "sqs:*", "Resource": "*"},
            {"Effect": "Deny", "Action": ["sqs:DeleteMessage", "sqs:DeleteMessageBatch"], "Resource": "*"}]}))
    key = iam.create_access_key(UserName="consumer")["AccessKey"]
    creds = {"AWS_ACCESS_KEY_ID": key["AccessKeyId"], "AWS_SECRET_ACCESS_KEY": key["SecretAccessKey"]}
    sqs = iam_server.client(key=key["AccessKeyId"], secret=key["SecretAccessKey"])
    url = sqs.create_queue(QueueName="no-delete")["QueueUrl"]
    sent = send(sqs, url, 150)
    # the denial is an HTTP 403, whatever the error code's text
    probe = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=1, VisibilityTimeout=0)["Messages"][0]
    with pytest.raises(ClientError) as denied:
        sqs.delete_message(QueueUrl=url, ReceiptHandle=probe["ReceiptHandle"])
    assert denied.value.response["ResponseMetadata"]["HTTPStatusCode"] == 403

    fast_queue_config(project, visibility=3)
    summaries = []
    for _ in range(3):
        out = run_etl(project, iam_server.url, url, "--json", creds=creds)
        assert out.returncode == 0, out.stderr
        summaries.append(json.loads(out.stdout.strip().splitlines()[-1]))
        time.sleep(3.5)                     # let the undeleted messages come back
    assert all(s["delete_denied"] and s["deleted"] == 0 for s in summaries)
    assert sum(s["new"] for s in summaries) == 150
    assert summaries[1]["skipped_seen"] > 0 and summaries[2]["skipped_seen"] > 0   # back, and skipped
    staged = ids_in(project / "staging")
    assert collections.Counter(staged) == collections.Counter(sent)   # all there, none twice
    log = (project / "logs" / "etl.log").read_text()
    assert log.count("no permission to delete") == 3                  # one warning per run
    assert key["SecretAccessKey"] not in log                          # credentials never logged


def test_a_run_ingests_and_processes_into_the_warehouse(project, queue):
    import duckdb

    sqs, url = queue
    fast_queue_config(project, visibility=30)
    sent = send(sqs, url, 120)
    out = run_etl(project, sqs.meta.endpoint_url, url)        # run_etl adds --no-process; undo that
    assert out.returncode == 0
    staged = list((project / "staging").glob("*.jsonl"))
    full_env = dict(os.environ, **CREDENTIALS, SQS_QUEUE_URL=url, AWS_ENDPOINT_URL=sqs.meta.endpoint_url)
    full_env.pop("NELO_CRASH_AT", None)
    more = send(sqs, url, 30, seed=2)
    done = subprocess.run([sys.executable, str(ROOT / "etl.py"), "--config", str(project / "config.json")],
                          env=full_env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert list((project / "staging").glob("*.jsonl")) == []          # both batches were processed
    assert len(list((project / "processed").glob("*.jsonl"))) == 2 == len(staged) + 1
    con = duckdb.connect(str(project / "warehouse" / "nelo.duckdb"), read_only=True)
    try:
        received = con.execute("SELECT sum(received) FROM etl_batches WHERE status = 'committed'").fetchall()[0][0]
        staged_ids = {r[0] for r in con.execute("SELECT DISTINCT message_id FROM stg_events").fetchall()}
        dead_ids = {r[0] for r in con.execute("SELECT message_id FROM dead_letter_messages").fetchall()}
    finally:
        con.close()
    assert received == len(sent) + len(more)
    assert staged_ids | dead_ids <= set(sent) | set(more)


def etl_env(endpoint: str, url: str, **extra: str) -> dict[str, str]:
    """etl.py's environment against a local server: credentials, queue, endpoint, ``extra``; the
    fault-injection variables only when ``extra`` sets them."""
    env = dict(os.environ, **CREDENTIALS, SQS_QUEUE_URL=url, AWS_ENDPOINT_URL=endpoint, **extra)
    for name in ("NELO_CRASH_AT", "NELO_PAUSE_AT", "ETL_CONFIG"):
        if name not in extra:
            env.pop(name, None)
    return env
