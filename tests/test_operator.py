"""The operator's side (issue 13): the README's cron line and the systemd units on a fresh copy,
--json on every outcome, a closed stdout, visibility and why polling stopped, --status,
dead-letter replay, schema upgrades, make install, one-line errors."""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import duckdb
import pytest

from nelo_etl import cli
from nelo_etl.localsqs import CREDENTIALS
from nelo_etl.upgrade import SCHEMA_VERSION

from .conftest import ROOT, SAMPLES, copy_samples, write_config
from .test_etl import etl_env, fast_queue_config, ids_in, send

#: subprocesses, servers, browsers or many loads: not in the fast subset (make test-fast)
pytestmark = pytest.mark.slow


def script(name: str, project: Path, *args: str, env: dict | None = None, **kw) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(ROOT / name), "--config", str(project / "config.json"), *args],
                          env=env or {k: v for k, v in os.environ.items() if k not in ("NELO_CRASH_AT", "NELO_PAUSE_AT")},
                          capture_output=True, text=True, timeout=300, **kw)


# ---------------------------------------------------------------------------------------------
# 1. the cron line and the systemd units, verbatim, on a fresh copy

@pytest.fixture
def fresh_copy(tmp_path: Path) -> Path:
    """What a fresh clone holds (tracked and new, not ignored, files), with .venv linked in as if
    the README's `make install` had run."""
    files = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=ROOT,
                           capture_output=True, check=True).stdout.decode().split("\0")
    dest = tmp_path / "nelo"
    for name in filter(None, files):
        src = ROOT / name
        if src.is_file():
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / name)
    (dest / ".venv").symlink_to(ROOT / ".venv")
    assert not (dest / "work").exists() and (dest / "logs").is_dir()
    return dest


def readme_cron_command() -> str:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    block = re.search(r"```cron\n(.*?)```", readme, re.S).group(1)
    (line,) = [x for x in block.splitlines() if x.strip() and not x.startswith("#")]
    fields = line.split(None, 5)
    assert len(fields) == 6 and fields[0] == "*/15", line
    return fields[5]                                         # the command, after the five schedule fields


def cron_env(home: Path) -> dict[str, str]:
    return {"PATH": "/usr/bin:/bin", "HOME": str(home), "SHELL": "/bin/sh", "LANG": "C"}   # what cron gives


def test_the_readme_cron_line_works_verbatim_on_a_fresh_copy(fresh_copy, queue, tmp_path):
    from filelock import FileLock

    sqs, url = queue
    (fresh_copy / ".env").write_text(f"SQS_QUEUE_URL={url}\nAWS_ENDPOINT_URL={sqs.meta.endpoint_url}\n"
                                     "AWS_ACCESS_KEY_ID=testing\nAWS_SECRET_ACCESS_KEY=testing\n")
    os.chmod(fresh_copy / ".env", 0o600)
    sent = send(sqs, url, 25)
    command = readme_cron_command().replace("/opt/nelo", str(fresh_copy))
    done = subprocess.run(["/bin/sh", "-c", command], env=cron_env(tmp_path), capture_output=True, text=True,
                          timeout=300, cwd=tmp_path)
    assert done.returncode == 0, (done.stdout, done.stderr, (fresh_copy / "logs" / "cron.log").read_text())
    lines = (fresh_copy / "logs" / "cron.log").read_text().splitlines()
    summary = json.loads(lines[-1])
    assert summary["status"] == "done" and summary["received"] == 25 and summary["loaded_events"] > 0
    assert sorted(ids_in(fresh_copy / "processed")) == sorted(sent)
    assert (fresh_copy / "warehouse" / "analytics.duckdb").exists()
    # a run that finds the lock held exits 75, which the line turns into success, and says so
    with FileLock(str(fresh_copy / "work" / "etl.lock"), timeout=0):
        skipped = subprocess.run(["/bin/sh", "-c", command], env=cron_env(tmp_path), capture_output=True,
                                 text=True, timeout=300, cwd=tmp_path)
    assert skipped.returncode == 0
    assert json.loads((fresh_copy / "logs" / "cron.log").read_text().splitlines()[-1])["status"] == "skipped"
    assert "skipped:" in (fresh_copy / "logs" / "etl.log").read_text()       # the log has every run


def unit(path: Path) -> dict[str, str]:
    return dict(re.findall(r"^(\w+)=(.*)$", path.read_text(encoding="utf-8"), re.M))


def test_the_systemd_units_run_etl_on_a_fresh_copy(fresh_copy, queue, tmp_path):
    sqs, url = queue
    service, timer = unit(fresh_copy / "deploy" / "nelo-etl.service"), unit(fresh_copy / "deploy" / "nelo-etl.timer")
    assert timer["OnCalendar"] == "*:0/15" and timer["Unit"] == "nelo-etl.service"
    assert service["Type"] == "oneshot" and "75" in service["SuccessExitStatus"].split()
    if shutil.which("systemd-analyze"):
        cal = subprocess.run(["systemd-analyze", "calendar", timer["OnCalendar"]], capture_output=True, text=True)
        assert cal.returncode == 0 and "*-*-* *:00/15:00" in cal.stdout, cal.stdout + cal.stderr
    (fresh_copy / ".env").write_text(f"SQS_QUEUE_URL={url}\nAWS_ENDPOINT_URL={sqs.meta.endpoint_url}\n"
                                     "AWS_ACCESS_KEY_ID=testing\nAWS_SECRET_ACCESS_KEY=testing\n")
    os.chmod(fresh_copy / ".env", 0o600)
    sent = send(sqs, url, 15)
    argv = service["ExecStart"].replace("/opt/nelo", str(fresh_copy)).split()
    done = subprocess.run(argv, cwd=service["WorkingDirectory"].replace("/opt/nelo", str(fresh_copy)),
                          env=cron_env(tmp_path), capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["received"] == 15
    assert sorted(ids_in(fresh_copy / "processed")) == sorted(sent)


def test_make_install_installs_the_runtime_requirements_only():
    out = subprocess.run(["make", "-n", "-B", "install"], cwd=ROOT, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert "-r requirements.txt" in out.stdout and "requirements-dev" not in out.stdout
    assert "mkdir -p logs" in out.stdout
    runtime = (ROOT / "requirements.txt").read_text().lower()
    assert not re.search(r"^(moto|pytest|hypothesis|psutil)\b", runtime, re.M)
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert "make install" in readme.split("## Production")[1].split("\n## ")[0]


# ---------------------------------------------------------------------------------------------
# 2. visibility, and why polling stopped

def test_a_visibility_shorter_than_a_long_poll_is_refused_in_one_line(project):
    for visibility, wait in ((0, 0), (30, 20)):
        write_config(project, queue={"wait_time_seconds": wait, "visibility_timeout_seconds": visibility})
        out = script("etl.py", project, env=dict(os.environ, SQS_QUEUE_URL="http://127.0.0.1:9/q"))
        assert out.returncode == cli.EXIT_CONFIG and out.stderr.count("\n") == 1
        assert "visibility_timeout_seconds" in out.stderr and "2 x wait_time_seconds + 2" in out.stderr
    assert not (project / "work").exists()


def test_a_run_longer_than_the_visibility_timeout_keeps_its_messages_hidden(project, queue):
    """Visibility 4 s, a run of about 6 s (a 1.5 s pause after each receive): the messages this run
    holds are extended, so none comes back during the run, and it stops because the queue is empty."""
    sqs, url = queue
    fast_queue_config(project, visibility=4)
    sent = send(sqs, url, 30)
    out = script("etl.py", project, "--no-process", "--json",
                 env=etl_env(sqs.meta.endpoint_url, url, NELO_PAUSE_AT="while_polling:1.5"))
    assert out.returncode == 0, out.stderr
    summary = json.loads(out.stdout)
    assert summary["seconds"] > 4 and summary["extended"] > 0
    assert (summary["received"], summary["new"], summary["skipped_seen"], summary["deleted"]) == (30, 30, 0, 30)
    assert summary["stopped"] == "queue_empty"
    assert sorted(ids_in(project / "staging")) == sorted(sent)


def test_the_summary_says_why_polling_stopped(project, queue):
    sqs, url = queue
    send(sqs, url, 25)
    env = etl_env(sqs.meta.endpoint_url, url)
    fast_queue_config(project, visibility=30, max_messages_per_run=10)
    first = script("etl.py", project, "--no-process", env=env)
    assert first.returncode == 0 and "stopped=max_messages" in first.stdout and "received=10 " in first.stdout
    fast_queue_config(project, visibility=30, max_seconds_per_run=0.001)
    second = script("etl.py", project, "--no-process", env=env)
    assert second.returncode == 0 and "stopped=max_seconds" in second.stdout
    fast_queue_config(project, visibility=30)
    third = script("etl.py", project, "--no-process", env=env)
    assert third.returncode == 0 and "stopped=queue_empty" in third.stdout
    received = [int(re.search(r" received=(\d+) ", out.stdout).group(1)) for out in (first, second, third)]
    assert sum(received) == 25 == len(ids_in(project / "staging"))
    log = (project / "logs" / "etl.log").read_text()
    assert log.count("etl: status=") == 3                     # every run's summary line, in the log


# ---------------------------------------------------------------------------------------------
# 3. --json: one object on stdout, whatever the outcome; a closed pipe is not an error

def test_json_is_exactly_one_object_for_every_outcome(project, queue):
    from filelock import FileLock

    sqs, url = queue
    fast_queue_config(project, visibility=30)
    env = etl_env(sqs.meta.endpoint_url, url)
    send(sqs, url, 20)
    outcomes = {}
    done = script("etl.py", project, "--json", env=env)           # with processing: file and gold lines
    outcomes["done"] = done
    outcomes["nothing_to_do"] = script("etl.py", project, "--json", env=env)
    with FileLock(str(project / "work" / "etl.lock"), timeout=0):
        outcomes["skipped"] = script("etl.py", project, "--json", env=env)
    outcomes["failed"] = script("etl.py", project, "--json", env=etl_env("http://127.0.0.1:9", url))
    write_config(project, bogus=1)
    outcomes["bad_usage"] = script("etl.py", project, "--json", env=env)
    codes = {"done": 0, "nothing_to_do": 0, "skipped": 75, "failed": 1, "bad_usage": 2}
    for status, out in outcomes.items():
        assert out.returncode == codes[status], (status, out.stderr)
        obj = json.loads(out.stdout)                                # the whole of stdout is one object
        assert out.stdout.count("\n") == 1 and obj["status"] == status and obj["exit_code"] == codes[status]
    assert "processing_batch_" in done.stderr and "gold:" in done.stderr   # human lines on stderr
    assert json.loads(done.stdout)["files"][0]["status"] == "committed"
    failed = json.loads(outcomes["failed"].stdout)
    assert "nothing was received" in failed["error"] and "safe in" not in failed["error"]


def test_a_closed_stdout_is_not_an_error(project, queue):
    sqs, url = queue
    fast_queue_config(project, visibility=30)
    send(sqs, url, 20)
    read_end, write_end = os.pipe()
    os.close(read_end)                                               # the reader is gone (jq exited)
    try:
        proc = subprocess.run([sys.executable, str(ROOT / "etl.py"), "--config", str(project / "config.json"),
                               "--json"], env=etl_env(sqs.meta.endpoint_url, url), stdout=write_end,
                              stderr=subprocess.PIPE, text=True, timeout=300)
    finally:
        os.close(write_end)
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr and "BrokenPipe" not in proc.stderr
    log = (project / "logs" / "etl.log").read_text()
    assert "Traceback" not in log and "stdout was closed by its reader" in log
    assert len(list((project / "processed").glob("*.jsonl"))) == 1           # the batch committed


# ---------------------------------------------------------------------------------------------
# 4. --status

def status(project: Path, env: dict, *args: str) -> tuple[int, dict]:
    out = script("etl.py", project, "--status", "--json", *args, env=env)
    assert out.returncode in (0, 1), out.stderr
    return out.returncode, json.loads(out.stdout)


def test_status_reports_health_and_exits_1_when_not_healthy(project, queue):
    sqs, url = queue
    fast_queue_config(project, visibility=30)
    env = etl_env(sqs.meta.endpoint_url, url)
    code, report = status(project, env)
    assert code == 1 and "no successful run recorded yet" in report["problems"]

    send(sqs, url, 30)
    assert script("etl.py", project, env=env).returncode == 0
    send(sqs, url, 7, seed=5)
    code, report = status(project, env)
    assert code == 0 and report["healthy"] and report["problems"] == []
    assert report["queue"] == {"reachable": True, "visible": 7, "in_flight": 0}
    assert report["last_success"]["age_seconds"] < 60
    assert report["warehouse"]["last_batch"]["received"] == 30
    assert report["warehouse"]["newest_event_utc"] and report["warehouse"]["published_utc"]
    human = script("etl.py", project, "--status", env=env)
    assert human.returncode == 0 and "health:          OK" in human.stdout and "7 waiting" in human.stdout

    # the analytics file older than the warehouse; no success for too long
    shutil.copyfile(SAMPLES, project / "staging" / "processing_batch_20990101T000001_more.jsonl")
    assert script("process_staging.py", project, env=env).returncode == 0
    code, report = status(project, env)
    assert code == 0 and sum(report["warehouse"]["dead_letters_24h"].values()) == 3   # the samples' bad three
    analytics = project / "warehouse" / "analytics.duckdb"
    os.utime(analytics, (time.time() - 3600, time.time() - 3600))
    code, report = status(project, env, "--max-age", "0.001")
    assert code == 1
    assert any("analytics file is older than the warehouse" in p for p in report["problems"])
    assert any(p.startswith("no successful run for") for p in report["problems"])


def test_status_names_a_failed_staging_file_with_its_error(project):
    copy_samples(project / "staging")
    bad = project / "staging" / "processing_batch_20990101T000000_bad.jsonl"
    bad.mkdir()                        # a "file" no load can read, whoever runs the test
    out = script("process_staging.py", project)
    assert out.returncode == 0 and f"{bad.name}: ignored: a folder, not a regular file" in out.stdout
    env = {k: v for k, v in os.environ.items() if k != "SQS_QUEUE_URL"}
    code, report = status(project, env)
    assert code == 1                   # left alone by the loader, but flagged until someone acts
    assert "not a regular file" in report["staging"]["failed"][bad.name]
    assert any(bad.name in p for p in report["problems"])
    assert report["queue"]["reachable"] is False and "SQS_QUEUE_URL" in report["queue"]["error"]
    bad.rmdir()
    assert script("process_staging.py", project).returncode == 0      # nothing left to fail


# ---------------------------------------------------------------------------------------------
# 5. dead-letter replay

def test_dead_letters_are_replayed_after_a_parser_fix_once_and_resolved(project, monkeypatch):
    """A parser bug rejects about a quarter of the events; after the fix, a replay
    loads them (one transaction, marked resolved), a second replay does nothing, and the truly
    bad samples stay dead letters."""
    from nelo_etl import staging, wire
    from nelo_etl.config import load_config
    from nelo_etl.replay import replay_dead_letters
    from nelo_etl.simulate import SimConfig, Simulator, write_batches

    write_config(project, parser="python")          # the contract parser alone sees the bug
    cfg = load_config(project / "config.json")
    (path,) = write_batches(Simulator(SimConfig(events=150, seed=7)).messages(), str(project / "staging"), 1)
    copy_samples(project / "staging")
    fixed_parse_body = wire.parse_body

    def buggy_parse_body(body, *args, **kwargs):
        event = fixed_parse_body(body, *args, **kwargs)
        if event.event_id[-1] in "0123":          # about a quarter of the events
            raise wire.RejectedMessage("bad_type:user_id", "a parser bug")
        return event

    monkeypatch.setattr(wire, "parse_body", buggy_parse_body)
    first = staging.process_files(cfg, staging.staging_files(cfg))
    assert first.ok
    monkeypatch.setattr(wire, "parse_body", fixed_parse_body)      # the fix is deployed

    def counts() -> tuple:
        con = duckdb.connect(str(cfg.database_path), read_only=True)
        try:
            return con.execute(
                "SELECT (SELECT count(DISTINCT event_id) FROM fct_events), "
                "(SELECT count(*) FROM dead_letter_messages WHERE reason = 'bad_type:user_id'), "
                "(SELECT count(*) FROM dead_letter_messages WHERE resolution = 'replayed'), "
                "(SELECT sum(received) - sum(loaded_events) - sum(duplicate_events) - sum(dead_lettered) "
                " FROM etl_batches WHERE status = 'committed')").fetchall()[0]
        finally:
            con.close()

    events_before, bugged, _, _ = counts()
    assert bugged > 5
    nothing = replay_dead_letters(cfg, reason_prefix="invalid_json")   # another reason: not touched
    assert nothing.now_valid == 0 and nothing.batch_file is None
    result = replay_dead_letters(cfg, reason_prefix="bad_type")
    assert result.now_valid == bugged and result.loaded_events > 0 and result.batch_file
    assert result.loaded_events + result.duplicate_events == bugged
    events_after, _, resolved, unbalanced = counts()
    assert events_after == events_before + result.loaded_events and resolved == bugged and unbalanced == 0
    assert (project / "processed" / result.batch_file).exists() and (project / "archive" / result.batch_file).exists()
    # a fresh load of the same files with the fixed parser holds the same events
    from .silver_helpers import make_project
    fresh = make_project(project.parent / (project.name + "-fresh"))
    staging.process_files(fresh, [project / "processed" / path.rsplit("/", 1)[-1],
                                  project / "processed" / "processing_batch_20251017T155740_samples.jsonl"],
                          move=False, refresh_gold=False)
    con = duckdb.connect(str(fresh.database_path), read_only=True)
    try:
        assert con.execute("SELECT count(DISTINCT event_id) FROM fct_events").fetchall()[0][0] == events_after
    finally:
        con.close()
    # again: nothing left to replay; the samples' truly bad lines still fail
    again = script("process_staging.py", project, "--replay-dead-letters", "--config", str(cfg.path))
    assert again.returncode == 0, again.stderr
    assert "candidates=3 now_valid=0" in again.stdout and "still invalid:" in again.stdout
    assert counts()[0] == events_after


def test_runs_that_dead_letter_say_how_many(project, queue):
    copy_samples(project / "staging")
    out = script("process_staging.py", project)
    assert out.returncode == 0 and "dead_lettered=3" in out.stdout
    sqs, url = queue
    fast_queue_config(project, visibility=30)
    send(sqs, url, 10)
    for body in ("not json", "[1, 2]"):
        sqs.send_message(QueueUrl=url, MessageBody=body)
    run = script("etl.py", project, env=etl_env(sqs.meta.endpoint_url, url))
    assert run.returncode == 0, run.stderr
    summary = [line for line in run.stdout.splitlines() if line.startswith("etl: ")][-1]
    assert "received=12 " in summary and summary.endswith("dead_lettered=2")


# ---------------------------------------------------------------------------------------------
# 6. upgrades from the current release's warehouse

RELEASE = "b55cf29"     # the release before versioning: its warehouse has no schema_version


@pytest.fixture
def release_warehouse(project, tmp_path) -> Path:
    """A warehouse made by the release's own code (git archive of RELEASE) from the samples."""
    if subprocess.run(["git", "cat-file", "-e", RELEASE], cwd=ROOT, capture_output=True).returncode != 0:
        pytest.skip(f"not a git checkout with {RELEASE}")
    release = tmp_path / "release"
    release.mkdir()
    archive = subprocess.run(["git", "archive", RELEASE], cwd=ROOT, capture_output=True, check=True).stdout
    subprocess.run(["tar", "-x", "-C", str(release)], input=archive, check=True)
    copy_samples(project / "staging")
    made = run_release(release, project)
    assert made.returncode == 0, made.stderr
    return release


def run_release(release: Path, project: Path) -> subprocess.CompletedProcess:
    """The release's process_staging.py on the project's folders, with the release's own config
    (a release refuses the keys added after it)."""
    import json as _json

    cfg = _json.loads((release / "config.json").read_text(encoding="utf-8"))
    for key in ("staging_dir", "processed_dir", "archive_dir", "dead_letter_dir", "database_path", "work_dir", "log_dir"):
        cfg[key] = str(project / cfg[key])
    path = release / "release-config.json"
    path.write_text(_json.dumps(cfg), encoding="utf-8")
    return subprocess.run([sys.executable, str(release / "process_staging.py"), "--config", str(path)],
                          cwd=release, capture_output=True, text=True, timeout=300)


def _extra_batch(project: Path) -> Path:
    from nelo_etl.simulate import SimConfig, Simulator, write_batches

    (path,) = write_batches(Simulator(SimConfig.chaos(events=200, seed=11)).messages(), str(project / "staging"), 1)
    return Path(path)


def _silver(project: Path, db: str = "nelo.duckdb") -> dict:
    from .silver_helpers import silver_tables
    from nelo_etl.config import load_config

    cfg = load_config(write_config(project, database_path=f"warehouse/{db}"))
    tables = silver_tables(cfg)
    write_config(project, database_path="warehouse/nelo.duckdb")
    return tables


def test_a_release_warehouse_is_upgraded_at_start_in_one_go(project, release_warehouse, tmp_path):
    extra = _extra_batch(project)
    out = script("process_staging.py", project)
    assert out.returncode == 0, out.stderr
    # the release's money was DOUBLE: it becomes DECIMAL, and Silver is rebuilt (the log says so)
    assert f"from schema version 0 to {SCHEMA_VERSION}" in (project / "logs" / "process_staging.log").read_text()
    assert f"from schema version 0 to {SCHEMA_VERSION}" in out.stdout and "Silver rebuilt" in out.stdout
    con = duckdb.connect(str(project / "warehouse" / "nelo.duckdb"), read_only=True)
    try:
        assert con.execute("SELECT max(version) FROM schema_version").fetchall()[0][0] == SCHEMA_VERSION
        assert con.execute("SELECT count(*) FROM duckdb_columns() WHERE table_name = 'stg_events' "
                           "AND column_name = 'raw_body'").fetchall() == [(0,)]       # version 4
    finally:
        con.close()
    again = script("process_staging.py", project)
    assert again.returncode == 0 and "schema version" not in again.stdout          # once only
    # the same as a warehouse made by this release from the same files
    from nelo_etl import staging
    from nelo_etl.config import load_config
    from .silver_helpers import make_project, silver_tables
    fresh = make_project(tmp_path / "fresh")
    staging.process_files(fresh, [project / "processed" / "processing_batch_20251017T155740_samples.jsonl",
                                  project / "processed" / extra.name], move=False, refresh_gold=False)
    assert silver_tables(load_config(project / "config.json")) == silver_tables(fresh)


def test_an_older_warehouse_without_recomputed_from_ts_is_upgraded_not_a_binder_error(project, release_warehouse):
    db = project / "warehouse" / "nelo.duckdb"
    con = duckdb.connect(str(db))
    try:
        tables = [t for (t,) in con.execute("SELECT table_name FROM duckdb_columns() "
                                            "WHERE column_name = 'recomputed_from_ts'").fetchall()]
        assert len(tables) >= 5
        for t in tables:
            con.execute(f"ALTER TABLE {t} DROP COLUMN recomputed_from_ts").fetchall()
    finally:
        con.close()
    extra = _extra_batch(project)
    # the release itself fails on this warehouse with a raw BinderException (the reported fault)
    broken = run_release(release_warehouse, project)
    assert broken.returncode == 1 and "Binder" in broken.stdout + broken.stderr
    rebuilt = script("silver_transforms.py", project, "--rebuild")
    assert rebuilt.returncode == 0, rebuilt.stderr
    assert f"from schema version 0 to {SCHEMA_VERSION}" in rebuilt.stdout and "Binder" not in rebuilt.stderr
    out = script("process_staging.py", project)
    assert out.returncode == 0, out.stderr
    assert extra.name in out.stdout and "loaded=" in out.stdout
    con = duckdb.connect(str(db), read_only=True)
    try:
        # every table the release had it in, and every table loaded overwrite_from today (fct_orders since v3)
        from nelo_etl import silver
        since_loaded = {m.name for m in silver.MODELS if m.incremental.mode == "overwrite_from"}
        assert set(tables) <= since_loaded
        assert sorted(t for (t,) in con.execute("SELECT table_name FROM duckdb_columns() "
                                                "WHERE column_name = 'recomputed_from_ts'").fetchall()) == sorted(since_loaded)
    finally:
        con.close()
    # --rebuild on a current warehouse recreates the tables (a dropped column comes back)
    con = duckdb.connect(str(db))
    try:
        con.execute("ALTER TABLE silver_user_sessions DROP COLUMN recomputed_from_ts").fetchall()
    finally:
        con.close()
    assert script("silver_transforms.py", project, "--rebuild").returncode == 0
    con = duckdb.connect(str(db), read_only=True)
    try:
        assert con.execute("SELECT count(*) FROM duckdb_columns() WHERE table_name = 'silver_user_sessions' "
                           "AND column_name = 'recomputed_from_ts'").fetchall()[0][0] == 1
    finally:
        con.close()


# ---------------------------------------------------------------------------------------------
# 8. one precise line for each operator error

def test_gold_on_an_empty_warehouse_is_one_line(project):
    out = script("gold_transforms.py", project)
    assert out.returncode == 1 and out.stderr.count("\n") == 1
    assert "no Silver tables yet: load a batch first" in out.stderr and "Exception" not in out.stderr


def test_reprocess_of_a_missing_file_is_bad_usage(project):
    out = script("process_staging.py", project, "--reprocess", str(project / "archive" / "nope.jsonl"))
    assert out.returncode == cli.EXIT_CONFIG == 2 and out.stderr.count("\n") == 1
    assert out.stderr.startswith("usage error: no such batch file:")


def test_the_simulator_without_credentials_is_one_line(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env.update(AWS_CONFIG_FILE=str(tmp_path / "none"), AWS_SHARED_CREDENTIALS_FILE=str(tmp_path / "none"),
               AWS_EC2_METADATA_DISABLED="true", HOME=str(tmp_path))
    out = subprocess.run([sys.executable, "-m", "nelo_etl.simulate", "--events", "10", "--endpoint-url",
                          "http://127.0.0.1:9"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 1 and out.stderr.count("\n") == 1
    assert "NoCredentialsError" in out.stderr and "Traceback" not in out.stderr


def test_release_money_out_of_the_new_range_is_dead_lettered_by_the_upgrade(project, release_warehouse):
    """The release loaded purchases at 9.0E30 (and then six Gold views failed on every query).
    Version 2 makes money DECIMAL(18, 6): the upgrade moves such events to the dead letters."""
    import json as _json

    lines = SAMPLES.read_text(encoding="utf-8").splitlines()
    poison = _json.loads(lines[3])
    body = _json.loads(poison["Body"])
    body["items"] = body["items"].replace("price=899.0", "price=9.0E30")
    body["user_id"] = "whale"
    poison.update(MessageId="whale-1", Body=_json.dumps(body))
    batch = project / "staging" / "processing_batch_20251019T000000_whale.jsonl"
    batch.write_text(_json.dumps(poison) + "\n", encoding="utf-8")
    made = run_release(release_warehouse, project)
    assert made.returncode == 0, made.stderr                        # the release loaded it
    out = script("process_staging.py", project)
    assert out.returncode == 0, out.stderr
    con = duckdb.connect(str(project / "warehouse" / "nelo.duckdb"), read_only=True)
    try:
        assert con.execute("SELECT count(*) FROM stg_events WHERE user_id = 'whale'").fetchall() == [(0,)]
        assert con.execute("SELECT message_id, reason FROM dead_letter_messages WHERE message_id = 'whale-1'"
                           ).fetchall() == [("whale-1", "bad_item_value:price")]
        assert con.execute("SELECT typeof(price) FROM stg_events LIMIT 1").fetchall() == [("DECIMAL(18,6)",)]
    finally:
        con.close()
    report = script("gold_transforms.py", project, "--report")
    assert report.returncode == 0, report.stderr


def test_a_version_3_warehouse_loses_only_its_raw_bodies(project):
    """Version 4 drops stg_events.raw_body (the archive keeps each line) without rebuilding Silver;
    the staged rows, Silver and the next load are as a version 4 warehouse's."""
    copy_samples(project / "staging")
    assert script("process_staging.py", project).returncode == 0
    db = project / "warehouse" / "nelo.duckdb"
    con = duckdb.connect(str(db))
    try:
        before = con.execute("SELECT * FROM stg_events ORDER BY event_id, item_index").fetchall()
        silver_before = con.execute("SELECT * FROM fct_events ORDER BY event_id").fetchall()
        con.execute("ALTER TABLE stg_events ADD COLUMN raw_body VARCHAR").fetchall()
        con.execute("UPDATE stg_events SET raw_body = '{}'").fetchall()
        con.execute("DELETE FROM schema_version").fetchall()
        con.execute("INSERT INTO schema_version VALUES (3, now()::TIMESTAMP, 'v3')").fetchall()
    finally:
        con.close()
    extra = _extra_batch(project)
    out = script("process_staging.py", project)
    assert out.returncode == 0, out.stderr
    log = (project / "logs" / "process_staging.log").read_text()
    assert f"from schema version 3 to {SCHEMA_VERSION}" in log and "shapes already current" in log
    assert extra.name in out.stdout
    con = duckdb.connect(str(db), read_only=True)
    try:
        assert con.execute("SELECT * FROM stg_events WHERE source_file <> $f ORDER BY event_id, item_index",
                           {"f": extra.name}).fetchall() == before
        assert con.execute("SELECT * FROM fct_events WHERE event_id IN (SELECT event_id FROM stg_events "
                           "WHERE source_file <> $f) ORDER BY event_id", {"f": extra.name}).fetchall() == silver_before
    finally:
        con.close()
