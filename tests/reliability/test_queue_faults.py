"""Queue faults: throttling and 5xx (a fault-injecting proxy on 127.0.0.1), expired credentials, a
queue that does not exist. Clear one-line errors, the right exit codes, nothing durable lost."""
from __future__ import annotations

import json

from nelo_etl import cli
from nelo_etl.localsqs import MotoServer

from ..fault_proxy import FaultProxy
from ..test_etl import drain, fast_queue_config, ids_in, run_etl, send
import pytest

#: subprocesses, servers, browsers or many loads: not in the fast subset (make test-fast)
pytestmark = pytest.mark.slow


def test_throttling_and_5xx_bursts_are_retried_and_the_run_succeeds(project, queue, moto_server):
    sqs, url = queue
    fast_queue_config(project, visibility=30)
    proxy = FaultProxy(moto_server.url).start()
    sent = []
    try:
        for seed, status in ((1, 400), (2, 503)):          # 400 + ThrottlingException, then 503
            sent += send(sqs, url, 40, seed=seed)
            proxy.mode, proxy.failed, proxy.forwarded = "pass", 0, 0
            proxy.fail_mode, proxy.fail_after, proxy.fail_count = f"error:{status}", 1, 2
            out = run_etl(project, proxy.url, url, "--json")
            assert out.returncode == 0, out.stderr
            assert proxy.failed == 2                    # the faults really happened, and were retried
            assert json.loads(out.stdout.splitlines()[-1])["new"] == 40
    finally:
        proxy.stop()
    assert sorted(ids_in(project / "staging")) == sorted(sent)


def test_persistent_5xx_fails_in_one_line_and_loses_nothing(project, queue, moto_server):
    sqs, url = queue
    fast_queue_config(project, visibility=2)
    sent = send(sqs, url, 40)
    proxy = FaultProxy(moto_server.url).start()
    try:
        proxy.fail_after, proxy.fail_mode = 2, "error:500"      # two receives pass, then only 500s
        out = run_etl(project, proxy.url, url)
        assert out.returncode == cli.EXIT_FAILED
        assert out.stderr.startswith("error: queue failure") and out.stderr.count("\n") == 1
        assert "500" in out.stderr or "InternalFailure" in out.stderr
        kept = ids_in(project / "staging")
        assert len(kept) == 20 and len(set(kept)) == 20          # what was received is durable
        proxy.mode, proxy.fail_after = "pass", None
        drain(project, proxy.url, url, sqs)
    finally:
        proxy.stop()
    assert sorted(ids_in(project / "staging")) == sorted(sent)


def test_a_missing_queue_is_one_line_and_exit_1(project, moto_server):
    fast_queue_config(project)
    out = run_etl(project, moto_server.url, f"{moto_server.url}/123456789012/no-such-queue")
    assert out.returncode == cli.EXIT_FAILED and out.stderr.count("\n") == 1
    assert "NonExistentQueue" in out.stderr or "does not exist" in out.stderr
    assert list((project / "staging").glob("*.jsonl")) == []


def test_expired_credentials_are_one_line_and_never_printed(project):
    with MotoServer({"INITIAL_NO_AUTH_ACTION_COUNT": "1"}) as server:
        sqs = server.client()
        url = sqs.create_queue(QueueName="auth")["QueueUrl"]        # the one action without auth
        fast_queue_config(project)
        secret = "EXPIRED-secret-9f8e7d6c5b4a"
        out = run_etl(project, server.url, url,
                      creds={"AWS_ACCESS_KEY_ID": "AKIAEXPIREDKEY000000", "AWS_SECRET_ACCESS_KEY": secret})
    assert out.returncode == cli.EXIT_FAILED and out.stderr.count("\n") == 1
    assert out.stderr.startswith("error: queue failure")
    assert secret not in out.stderr + out.stdout
    assert secret not in (project / "logs" / "etl.log").read_text()


def test_local_sqs_servers_started_together_each_answer_from_their_own_process():
    """Two test workers start their SQS servers at the same moment. Each server binds a port the
    kernel picks and reports it, so neither can be handed a port the other is about to take and
    then pass its readiness check against the other's server (as picking a free port first and
    passing it on could)."""
    import threading

    import psutil

    servers = [MotoServer() for _ in range(3)]
    starts = [threading.Thread(target=server.start) for server in servers]
    for thread in starts:
        thread.start()
    for thread in starts:
        thread.join(60)
    try:
        ports = [server.port for server in servers]
        assert None not in ports and len(set(ports)) == 3
        for server in servers:
            listening = {c.laddr.port for c in psutil.Process(server.proc.pid).net_connections("tcp")
                         if c.status == psutil.CONN_LISTEN}
            assert server.port in listening           # the answer comes from this server's own child
        servers[0].client().create_queue(QueueName="only-on-the-first")
        assert [u.rsplit("/", 1)[-1] for u in servers[0].client().list_queues().get("QueueUrls", [])] \
            == ["only-on-the-first"]
        assert servers[1].client().list_queues().get("QueueUrls", []) == []
    finally:
        for server in servers:
            server.stop()
    assert all(server.proc.poll() is not None for server in servers)


def test_a_local_sqs_server_that_cannot_start_says_so():
    """A moto_server that exits before it listens (here: a Python that cannot start) is an error
    naming it, and leaves no process behind."""
    server = MotoServer({"PYTHONHOME": "/nonexistent"})
    with pytest.raises(RuntimeError, match="moto_server exited at start"):
        server.start()
    assert server.proc.poll() is not None and server.port is None
