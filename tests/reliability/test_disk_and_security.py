"""Disk and file faults, and security: the run stops with a clear message, what was committed
stays committed; no credential leaks; files are owner-only; config values never become SQL."""
from __future__ import annotations

import json
import os
import resource
import shutil
import signal
import subprocess
import sys
import time


from nelo_etl import cli, gold

from ..conftest import ROOT, SAMPLES, copy_samples, write_config
from ..test_etl import fast_queue_config, run_etl, send
from ..test_staging import SAMPLE_NAME, query, run_ps
import pytest

#: subprocesses, servers, browsers or many loads: not in the fast subset (make test-fast)
pytestmark = pytest.mark.slow


def test_a_deleted_staging_file_is_recovered_from_the_archive(project):
    archived = copy_samples(project / "archive", SAMPLE_NAME)
    copy_samples(project / "staging", SAMPLE_NAME).unlink()          # deleted before processing
    out = run_ps(project)
    assert out.returncode == 0 and "nothing to do" in out.stdout
    out = run_ps(project, "--reprocess", str(archived))
    assert out.returncode == 0 and "loaded=8" in out.stdout


def test_a_truncated_staging_file_loses_nothing_once_the_archive_is_reprocessed(project, tmp_path):
    archived = copy_samples(project / "archive", SAMPLE_NAME)
    data = archived.read_bytes()
    (project / "staging" / SAMPLE_NAME).write_bytes(data[: len(data) // 2])     # cut mid-line
    old = time.time() - 3600                      # untouched for an hour: no writer is busy with it
    os.utime(project / "staging" / SAMPLE_NAME, (old, old))
    out = run_ps(project)
    assert out.returncode == 0
    assert query(project, "SELECT reason FROM dead_letter_messages WHERE reason = 'invalid_envelope'") != []
    assert run_ps(project, "--reprocess", str(archived)).returncode == 0
    assert query(project, "SELECT count(DISTINCT event_id) FROM stg_events") == [(8,)]


def _limit_file_size(limit: int):
    def apply() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)             # a failed write, not a killed process
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
    return apply


def test_a_full_disk_rolls_back_and_keeps_what_was_committed(project):
    copy_samples(project / "staging", SAMPLE_NAME)
    assert run_ps(project).returncode == 0
    before = query(project, "SELECT count(*) FROM stg_events")
    big = project / "staging" / "processing_batch_20251018T000000_big.jsonl"
    subprocess.run([sys.executable, "-m", "nelo_etl.simulate", "--events", "4000", "--batches", "1",
                    "--out", str(project / "tmp")], cwd=ROOT, check=True, capture_output=True)
    shutil.move(next((project / "tmp").glob("*.jsonl")), big)
    db = project / "warehouse" / "nelo.duckdb"
    out = subprocess.run([sys.executable, str(ROOT / "process_staging.py"), "--config", str(project / "config.json")],
                         capture_output=True, text=True, preexec_fn=_limit_file_size(db.stat().st_size + 64 * 1024))
    assert out.returncode == cli.EXIT_FAILED and out.stderr.count("\n") == 1, out.stderr
    assert big.exists()                                           # still waiting in staging
    assert query(project, "SELECT count(*) FROM stg_events") == before
    assert run_ps(project).returncode == 0                        # room again: it loads
    assert query(project, "SELECT count(*) FROM etl_batches WHERE status = 'committed'") == [(2,)]


def test_a_full_disk_under_the_log_file_is_still_one_line(project):
    """The disk is full for the log file too: logging's own error report used to print a
    traceback on stderr. The operator gets one line, always."""
    copy_samples(project / "staging", SAMPLE_NAME)
    assert run_ps(project).returncode == 0
    (project / "staging" / "processing_batch_20251018T000000_b.jsonl").write_text(
        SAMPLES.read_text(encoding="utf-8").replace("SKU-", "SKB-"), encoding="utf-8")
    limit = 4 * 1024 * 1024                                       # below the warehouse's size, and the log's
    log_file = project / "logs" / "process_staging.log"
    log_file.write_bytes(b"x" * limit)                            # below the log's rotation size (5 MB)
    out = subprocess.run([sys.executable, str(ROOT / "process_staging.py"), "--config", str(project / "config.json")],
                         capture_output=True, text=True, preexec_fn=_limit_file_size(limit))
    assert out.returncode == cli.EXIT_FAILED
    assert "Traceback" not in out.stderr and "Logging error" not in out.stderr, out.stderr
    assert out.stderr.count("\n") == 1, out.stderr


def test_a_corrupt_database_stops_the_run_with_one_line(project):
    copy_samples(project / "staging", SAMPLE_NAME)
    (project / "warehouse" / "nelo.duckdb").write_bytes(b"this is not a database" * 1000)
    out = run_ps(project)
    assert out.returncode == cli.EXIT_FAILED and out.stderr.count("\n") == 1
    assert "nelo.duckdb" in out.stderr or "database" in out.stderr.lower()
    assert (project / "staging" / SAMPLE_NAME).exists()


def test_no_credential_ever_reaches_logs_errors_or_files(project, queue, moto_server):
    sqs, url = queue
    fast_queue_config(project, visibility=30)
    send(sqs, url, 30)
    planted = {"AWS_ACCESS_KEY_ID": "AKIAPLANTED123456789", "AWS_SECRET_ACCESS_KEY": "PLANTED/secret+value/0123456789"}
    # moto accepts any key: a successful run, a failing run (no such queue) and a crash-recovery run
    ok = run_etl(project, sqs.meta.endpoint_url, url, "--json", creds=planted)
    bad = run_etl(project, sqs.meta.endpoint_url, url + "-missing", creds=planted)
    assert ok.returncode == 0 and bad.returncode == cli.EXIT_FAILED
    assert run_ps(project).returncode == 0
    texts = [ok.stdout, ok.stderr, bad.stdout, bad.stderr]
    for folder in ("logs", "staging", "archive", "processed", "dead_letter", "work"):
        for path in (project / folder).rglob("*"):
            if path.is_file():
                texts.append(path.read_bytes().decode("utf-8", "replace"))
    for secret in planted.values():
        assert not any(secret in t for t in texts), secret


def test_files_with_user_ids_are_owner_only_and_the_analyst_file_read_only(project, queue):
    sqs, url = queue
    fast_queue_config(project, visibility=30)
    send(sqs, url, 30)
    assert run_etl(project, sqs.meta.endpoint_url, url).returncode == 0
    copy_samples(project / "staging", SAMPLE_NAME)                 # brings dead letters
    assert run_ps(project).returncode == 0
    checked = 0
    for folder in ("processed", "archive", "dead_letter", "warehouse"):
        for path in (project / folder).iterdir():
            # group-readable: what analysts read (each generation is analytics.duckdb, now or before)
            if path.name in ("analytics.duckdb", *gold.GEN_NAMES) or path.name.startswith("team_"):
                assert path.stat().st_mode & 0o777 == 0o440
            elif path.suffix in (".jsonl", ".duckdb"):
                assert path.stat().st_mode & 0o077 == 0, path
                checked += 1
    assert checked >= 4


def test_config_values_are_bound_never_formatted_into_sql(project):
    """A hostile experiment_pattern is matched as text (it is a bound parameter everywhere)."""
    hostile = "NELO_XP_'; DROP TABLE stg_events; --"
    write_config(project, experiment_pattern=hostile)
    lines = SAMPLES.read_text(encoding="utf-8").splitlines()
    body = json.loads(json.loads(lines[0])["Body"])
    body["items"] = body["items"].replace("NELO_XP_CHECKOUT_B", hostile + "X_B")
    line = json.dumps({"MessageId": "h1", "Attributes": {"SentTimestamp": "1760716660002"}, "Body": json.dumps(body)})
    for parser in ("python", "native"):
        write_config(project, parser=parser)
        (project / "staging" / f"processing_batch_20251017T00000{0 if parser == 'python' else 1}_h.jsonl").write_text(
            "\n".join(lines + [line]) + "\n")
        assert run_ps(project).returncode == 0
    arms = query(project, "SELECT DISTINCT unnest(experiment_arms).experiment_id FROM stg_events")
    assert arms == [("X",)]
    assert query(project, "SELECT count(*) FROM stg_events") != [(0,)]
