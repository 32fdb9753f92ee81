"""``etl.py --status``: the pipeline's health for a monitor, without ever blocking the job.

It reads only what the job leaves for it: the run notes in ``work/`` (``last_run.json``,
``last_success.json``, ``staging_failures.json``, written atomically by each run), the folders, the
queue's attributes (when it is reachable), and the published analytics file
``warehouse/analytics.duckdb``, opened read-only. It never opens ``warehouse/nelo.duckdb``: DuckDB
lets no writer in while a reader holds the file, so a status check must not touch it. The analytics
file is swapped in by rename, so an open read always sees one whole publication.

Healthy (exit 0) unless: no successful run within ``--max-age`` minutes (default 30: two 15-minute
slots), a file in ``staging/`` failed to load, or the analytics file is older than the last batch
moved to ``processed/`` (a publication failed). Then exit 1, with the reasons.
"""
from __future__ import annotations

import json
import os
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from .config import Config

LAST_RUN = "last_run.json"
LAST_SUCCESS = "last_success.json"
STAGING_FAILURES = "staging_failures.json"
DEFAULT_MAX_AGE_MINUTES = 30.0


def _write_json(path: Path, obj: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(obj, sort_keys=True, default=str), encoding="utf-8")
    os.replace(tmp, path)


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def record_run(cfg: Config, outcome: dict[str, Any]) -> None:
    """Note an etl.py run's outcome for --status (every outcome; exit 0 also as the last success)."""
    work = Path(cfg.work_dir)
    note = {k: outcome.get(k) for k in ("status", "exit_code", "error", "finished_utc", "received", "new",
                                          "conflicts", "stopped", "batch_file", "loaded_events", "dead_lettered")}
    note["finished_epoch"] = time.time()
    _write_json(work / LAST_RUN, note)
    if outcome.get("exit_code") == 0:
        _write_json(work / LAST_SUCCESS, note)
    record_files(cfg, outcome.get("files") or [])


def record_files(cfg: Config, files: list[dict[str, Any]]) -> None:
    """Keep ``staging_failures.json``: the latest error of each file that failed to load, or that
    is not a regular file the loader will ever read (ignored: a symlink, FIFO, folder ...), so
    --status flags it until someone acts; dropped once the file loads."""
    if not files:
        return
    path = Path(cfg.work_dir) / STAGING_FAILURES
    failures = _read_json(path) or {}
    for f in files:
        if f["status"] in ("failed", "ignored"):
            failures[f["file_name"]] = {"error": f.get("error"), "at_utc": _now_iso()}
        else:
            failures.pop(f["file_name"], None)
    _write_json(path, failures)


def _now_iso() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def queue_backlog(cfg: Config) -> dict[str, Any]:
    """ApproximateNumberOfMessages (and in flight), or why the queue could not be asked."""
    url = os.environ.get("SQS_QUEUE_URL", "").strip()
    if not url:
        return {"reachable": False, "error": "SQS_QUEUE_URL is not set"}
    try:
        import boto3
        from botocore.config import Config as BotoConfig

        endpoint = os.environ.get("AWS_ENDPOINT_URL") or cfg.queue.endpoint_url
        client = boto3.client("sqs", region_name=cfg.queue.region, endpoint_url=endpoint,
                              config=BotoConfig(retries={"max_attempts": 1, "mode": "standard"},
                                                connect_timeout=3, read_timeout=5))
        attrs = client.get_queue_attributes(QueueUrl=url, AttributeNames=[
            "ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"])["Attributes"]
        return {"reachable": True, "visible": int(attrs.get("ApproximateNumberOfMessages", 0)),
                "in_flight": int(attrs.get("ApproximateNumberOfMessagesNotVisible", 0))}
    except Exception as exc:  # noqa: BLE001 - a status check reports, it does not fail
        text = str(exc).strip().splitlines()
        return {"reachable": False, "error": f"{type(exc).__name__}: {text[0][:200] if text else ''}"}


def warehouse_facts(cfg: Config) -> dict[str, Any]:
    """From the published analytics file (read-only): newest event, last batch, dead letters by
    reason over the last 24 h (by the time of the load that rejected them)."""
    import duckdb

    from .gold import analytics_path

    path = analytics_path(cfg)
    if not path.exists():
        return {"analytics_file": str(path), "published_utc": None}
    facts: dict[str, Any] = {"analytics_file": str(path),
                             "published_utc": datetime.fromtimestamp(path.stat().st_mtime, timezone.utc)
                             .isoformat(timespec="seconds")}
    con = duckdb.connect(str(path), read_only=True)
    try:
        con.execute("SET TimeZone = 'UTC'").fetchall()
        tables = {r[0] for r in con.execute("SELECT table_name FROM duckdb_tables()").fetchall()}
        if "fct_events" in tables:
            newest = con.execute("SELECT max(event_ts) FROM fct_events").fetchall()[0][0]
            facts["newest_event_utc"] = newest.isoformat() if newest else None
        if "etl_batches" in tables:
            row = con.execute("SELECT file_name, finished_ts, received, loaded_events, dead_lettered FROM etl_batches "
                              "WHERE status = 'committed' ORDER BY load_id DESC LIMIT 1").fetchall()
            if row:
                name, finished, received, loaded, dead = row[0]
                facts["last_batch"] = {"file_name": name, "finished_utc": finished.isoformat() if finished else None,
                                       "received": received, "loaded_events": loaded, "dead_lettered": dead}
        if {"dead_letter_messages", "etl_batches"} <= tables:
            rows = con.execute(
                "SELECT d.reason, count(*) FROM dead_letter_messages d JOIN etl_batches b USING (load_id) "
                "WHERE b.finished_ts >= now()::TIMESTAMP - INTERVAL 24 HOUR AND d.resolved_ts IS NULL "
                "GROUP BY 1 ORDER BY 2 DESC, 1").fetchall()
            facts["dead_letters_24h"] = {reason: n for reason, n in rows}
    finally:
        con.close()
    return facts


def collect(cfg: Config, max_age_minutes: float = DEFAULT_MAX_AGE_MINUTES, now: float | None = None) -> dict[str, Any]:
    """Everything --status reports, with ``healthy`` and the ``problems`` that make it not."""
    now = now if now is not None else time.time()
    work = Path(cfg.work_dir)
    problems: list[str] = []
    report: dict[str, Any] = {"checked_utc": _now_iso()}

    last_run = _read_json(work / LAST_RUN)
    last_success = _read_json(work / LAST_SUCCESS)
    report["last_run"] = last_run
    if last_success:
        age = now - float(last_success.get("finished_epoch", 0))
        report["last_success"] = {"finished_utc": last_success.get("finished_utc"), "age_seconds": round(age)}
        if age > max_age_minutes * 60:
            problems.append(f"no successful run for {age / 60:.0f} min (limit {max_age_minutes:.0f})")
    else:
        report["last_success"] = None
        problems.append("no successful run recorded yet")

    report["queue"] = queue_backlog(cfg)

    staged = sorted(p for p in Path(cfg.staging_dir).glob("*.jsonl") if not p.name.startswith("."))
    failures = _read_json(work / STAGING_FAILURES) or {}
    failed = {p.name: failures[p.name]["error"] for p in staged if p.name in failures}
    report["staging"] = {"waiting": len(staged), "failed": failed}
    for name, error in failed.items():
        problems.append(f"staging file {name} failed: {error}")

    try:
        facts = warehouse_facts(cfg)
    except Exception as exc:  # noqa: BLE001 - an unreadable analytics file is itself a finding
        facts = {"error": f"{type(exc).__name__}: {str(exc).splitlines()[0][:200]}"}
        problems.append(f"analytics file unreadable: {facts['error']}")
    report["warehouse"] = facts

    processed = [p for p in Path(cfg.processed_dir).glob("*.jsonl")]
    newest_load = max((p.stat().st_ctime for p in processed), default=None)
    from .gold import analytics_path
    published = analytics_path(cfg).stat().st_mtime if analytics_path(cfg).exists() else None
    if newest_load is not None and (published is None or published < newest_load):
        problems.append("the analytics file is older than the warehouse (a publication failed; "
                        "./gold_transforms.py publishes again)")
    report["healthy"] = not problems
    report["problems"] = problems
    return report


def render(report: dict[str, Any]) -> str:
    """The human form: a few aligned lines."""
    def fmt(v: Any) -> str:
        return "-" if v is None else str(v)

    last = report.get("last_run") or {}
    success = report.get("last_success") or {}
    q = report["queue"]
    wh = report["warehouse"]
    lines = [
        f"health:          {'OK' if report['healthy'] else 'NOT OK'}",
        f"last run:        {fmt(last.get('status'))} at {fmt(last.get('finished_utc'))}"
        + (f" ({last['error']})" if last.get("error") else ""),
        f"last success:    {fmt(success.get('finished_utc'))}"
        + (f" ({success['age_seconds'] // 60} min ago)" if success else ""),
        "queue backlog:   " + (f"{q['visible']} waiting, {q['in_flight']} in flight" if q.get("reachable")
                               else f"unknown ({q.get('error')})"),
        f"staging:         {report['staging']['waiting']} waiting, {len(report['staging']['failed'])} failed",
        *[f"  failed {name}: {err}" for name, err in report["staging"]["failed"].items()],
        f"dead letters 24h: " + (", ".join(f"{k}={v}" for k, v in (wh.get("dead_letters_24h") or {}).items()) or "none"),
        f"newest event:    {fmt(wh.get('newest_event_utc'))}",
        f"last batch:      " + (f"{wh['last_batch']['file_name']} at {wh['last_batch']['finished_utc']}"
                                if wh.get("last_batch") else "-"),
        f"analytics file:  published {fmt(wh.get('published_utc'))}",
        *[f"problem: {p}" for p in report["problems"]],
    ]
    return "\n".join(lines)


def main(cfg: Config, json_mode: bool = False, max_age_minutes: float = DEFAULT_MAX_AGE_MINUTES) -> int:
    """Print the status; exit 0 when healthy, 1 when not."""
    from . import cli

    report = collect(cfg, max_age_minutes)
    if json_mode:
        cli.emit_json(report)
    else:
        cli.emit(render(report))
    return cli.EXIT_OK if report["healthy"] else cli.EXIT_FAILED
