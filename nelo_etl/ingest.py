"""etl.py's work: drain the SQS queue into an immutable batch file without ever losing a message.

The order of steps is what makes a kill -9 at any instant safe:

1. under the run lock, **recover** what a crashed run left in ``work/``: a raw file is cut back to
   its last complete line and finished into a batch; a finished batch is copied on;
2. **poll**: each received message is appended to ``work/raw.jsonl.part`` (skipping MessageIds
   already written, by this run or, per the seen-cache, an earlier one);
3. **seal**: flush, fsync, atomically rename to ``work/processing_batch_<UTC>_<id>.jsonl``;
4. **publish**: copy into ``archive/`` and ``staging/`` (each by temp file + fsync + rename);
5. **remember**: mark the MessageIds seen (diskcache, TTL), only now that the batch is durable;
6. **delete** the messages from the queue (only now), tolerating a consumer without permission;
7. remove the sealed file from ``work/`` (its copies are durable), then process staging.

A message received but not yet sealed when the run dies is still on the queue (it was not
deleted) and comes back after its visibility timeout; one sealed but not deleted comes back and is
skipped as seen. The database deduplicates by event identity, so even a cache loss costs nothing.
"""
from __future__ import annotations

import json
import logging
import os
import shutil
import signal
import sys
import time
import uuid
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from .config import Config, ConfigError

log = logging.getLogger("nelo_etl.ingest")

RAW_NAME = "raw.jsonl.part"
BATCH_GLOB = "processing_batch_*.jsonl"
LOCK_NAME = "etl.lock"


class LockHeld(Exception):
    """Another run holds the lock."""


def crash_point(name: str) -> None:
    """Fault injection for the reliability tests: SIGKILL this process when ``NELO_CRASH_AT``
    names this point; sleep when ``NELO_PAUSE_AT`` is ``<point>:<seconds>`` (a run that outlasts
    its slot). Unset in production: a dictionary lookup and nothing else."""
    if os.environ.get("NELO_CRASH_AT") == name:
        sys.stderr.flush()
        os.kill(os.getpid(), signal.SIGKILL)
    pause = os.environ.get("NELO_PAUSE_AT", "")
    if pause.startswith(name + ":"):
        time.sleep(float(pause.split(":", 1)[1]))


# --------------------------------------------------------------------------------------------
# durable files

def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def durable_copy(src: Path, dest_dir: Path) -> Path:
    """Copy ``src`` into ``dest_dir`` by temp file + fsync + rename: a reader sees all or nothing.
    An existing identical copy is kept (so a recovery can repeat this step)."""
    dest = dest_dir / src.name
    if dest.exists() and dest.stat().st_size == src.stat().st_size:
        return dest
    tmp = dest_dir / f".{src.name}.{uuid.uuid4().hex[:8]}.tmp"
    with open(src, "rb") as fin, open(tmp, "wb") as fout:
        shutil.copyfileobj(fin, fout, 1 << 20)
        fout.flush()
        os.fsync(fout.fileno())
    os.replace(tmp, dest)
    fsync_dir(dest_dir)
    return dest


def batch_name(now: datetime | None = None) -> str:
    now = now or datetime.now(timezone.utc)
    return f"processing_batch_{now.strftime('%Y%m%dT%H%M%S')}_{uuid.uuid4().hex[:8]}.jsonl"


def cut_to_last_line(path: Path) -> int:
    """Drop a partial last line (a kill mid-write); returns the bytes kept."""
    with open(path, "r+b") as fh:
        data = fh.read()
        keep = data.rfind(b"\n") + 1
        if keep != len(data):
            fh.truncate(keep)
            fh.flush()
            os.fsync(fh.fileno())
    return keep


def message_ids_of(path: Path) -> list[str]:
    ids = []
    with open(path, "rb") as fh:
        for line in fh:
            if line.strip():
                ids.append(json.loads(line)["MessageId"])
    return ids


# --------------------------------------------------------------------------------------------
# the run

@dataclass
class RunSummary:
    received: int = 0
    new: int = 0
    skipped_seen: int = 0
    deleted: int = 0
    recovered_batches: list[str] = field(default_factory=list)
    batch_file: str | None = None
    seconds: float = 0.0
    delete_denied: bool = False
    error: str | None = None

    def line(self) -> str:
        return (f"etl: received={self.received} new={self.new} skipped_seen={self.skipped_seen} "
                f"deleted={self.deleted} batch={self.batch_file or '-'} seconds={self.seconds:.1f}"
                + (f" recovered={len(self.recovered_batches)}" if self.recovered_batches else "")
                + (" delete=denied" if self.delete_denied else ""))

    def json_line(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)


class Ingestor:
    """One etl.py run against one queue."""

    def __init__(self, cfg: Config, queue_url: str, endpoint_url: str | None) -> None:
        self.cfg = cfg
        self.queue_url = queue_url
        self.endpoint_url = endpoint_url
        self.work = Path(cfg.work_dir)
        self.work.mkdir(parents=True, exist_ok=True)
        self.summary = RunSummary()
        self._delete_allowed = True
        self._sqs: Any = None
        self._seen: Any = None

    # ---- resources
    @property
    def seen(self) -> Any:
        if self._seen is None:
            import diskcache
            self._seen = diskcache.Cache(str(self.work / "seen_messages"))
        return self._seen

    @property
    def sqs(self) -> Any:
        if self._sqs is None:
            self._sqs = sqs_client(self.cfg, self.endpoint_url)
        return self._sqs

    def close(self) -> None:
        if self._seen is not None:
            self._seen.close()

    # ---- steps
    def recover(self) -> list[Path]:
        """Finish what a crashed run left: the raw file into a batch, sealed batches onward."""
        raw = self.work / RAW_NAME
        if raw.exists():
            if cut_to_last_line(raw) > 0:
                sealed = self.seal(raw)
                log.warning("recovered raw file of a crashed run as %s", sealed.name)
            else:
                raw.unlink()
        finished = []
        for sealed in sorted(self.work.glob(BATCH_GLOB)):
            self.publish(sealed)
            self.summary.recovered_batches.append(sealed.name)
            finished.append(sealed)
        return finished

    def seal(self, raw: Path) -> Path:
        """fsync the raw file and rename it to an immutable batch name."""
        with open(raw, "rb+") as fh:
            os.fsync(fh.fileno())
        sealed = self.work / batch_name()
        os.replace(raw, sealed)
        fsync_dir(self.work)
        crash_point("after_rename")
        return sealed

    def publish(self, sealed: Path) -> None:
        """Archive and stage a sealed batch, remember its MessageIds, drop it from work/."""
        durable_copy(sealed, Path(self.cfg.archive_dir))
        durable_copy(sealed, Path(self.cfg.staging_dir))
        crash_point("after_publish")
        ttl = self.cfg.message_cache_ttl_seconds
        for message_id in message_ids_of(sealed):
            self.seen.set(message_id, True, expire=ttl)
        sealed.unlink()
        fsync_dir(self.work)

    def poll(self, raw_fh: Any, to_delete: list[dict[str, str]]) -> None:
        """Receive until the queue is empty or a per-run limit is reached."""
        q = self.cfg.queue
        started = time.monotonic()
        in_this_run: set[str] = set()          # written to the raw file by this run
        received_this_run: set[str] = set()    # every MessageId this run received
        while self.summary.received < q.max_messages_per_run and time.monotonic() - started < q.max_seconds_per_run:
            want = min(10, q.max_messages_per_run - self.summary.received)
            resp = self.sqs.receive_message(
                QueueUrl=self.queue_url, MaxNumberOfMessages=want, WaitTimeSeconds=q.wait_time_seconds,
                VisibilityTimeout=q.visibility_timeout_seconds,
                MessageSystemAttributeNames=["SentTimestamp", "ApproximateReceiveCount"])
            messages = resp.get("Messages", [])
            if all(m["MessageId"] in received_this_run for m in messages):
                break     # only messages this run already had: they are cycling back, nothing new
            received_this_run.update(m["MessageId"] for m in messages)
            already_durable: list[dict[str, str]] = []
            for m in messages:
                self.summary.received += 1
                mid = m["MessageId"]
                entry = {"Id": "0", "ReceiptHandle": m["ReceiptHandle"]}
                if mid in in_this_run:
                    # redelivered within this run: written but not yet durable; delete after sealing
                    self.summary.skipped_seen += 1
                    to_delete.append(entry)
                    continue
                if mid in self.seen:
                    # durable in an earlier batch file: delete it now, so it stops coming back
                    self.summary.skipped_seen += 1
                    already_durable.append(entry)
                    continue
                in_this_run.add(mid)
                line = json.dumps({"MessageId": mid, "Attributes": m.get("Attributes", {}), "Body": m["Body"]},
                                  ensure_ascii=False)
                raw_fh.write(line.encode("utf-8", "surrogateescape") + b"\n")
                self.summary.new += 1
                to_delete.append(entry)
            raw_fh.flush()
            crash_point("while_polling")
            if already_durable:
                self.delete(already_durable)

    def delete(self, entries: list[dict[str, str]]) -> None:
        """DeleteMessageBatch in tens; a 403 (no permission) stops deleting for this run."""
        from botocore.exceptions import ClientError

        for i in range(0, len(entries), 10):
            if not self._delete_allowed:
                return
            chunk = [dict(e, Id=str(j)) for j, e in enumerate(entries[i:i + 10])]
            try:
                resp = self.sqs.delete_message_batch(QueueUrl=self.queue_url, Entries=chunk)
            except ClientError as exc:
                status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
                if status == 403:
                    log.warning("no permission to delete messages (HTTP 403): they will come back after "
                                "their visibility timeout and be skipped as seen; not deleting for the rest of this run")
                    self._delete_allowed = False
                    self.summary.delete_denied = True
                    return
                log.warning("delete failed (%s); the messages will come back and be skipped as seen", status)
                continue
            self.summary.deleted += len(resp.get("Successful", []))
            if resp.get("Failed"):
                log.warning("%d deletes failed; those messages will be skipped as seen", len(resp["Failed"]))

    def run(self) -> RunSummary:
        """Recover, poll, seal, publish, delete. Returns the summary (``error`` set on a queue failure)."""
        t0 = time.monotonic()
        self.recover()
        raw = self.work / RAW_NAME
        to_delete: list[dict[str, str]] = []
        try:
            with open(raw, "ab") as fh:
                try:
                    self.poll(fh, to_delete)
                except Exception as exc:  # noqa: BLE001 - keep what was received, then fail
                    self.summary.error = f"queue failure: {type(exc).__name__}: {_first_line(exc)}"
                    log.error("%s", self.summary.error)
                fh.flush()
                os.fsync(fh.fileno())
            crash_point("after_raw_write")
            if raw.stat().st_size == 0:
                raw.unlink()
            else:
                sealed = self.seal(raw)
                self.summary.batch_file = sealed.name
                self.publish(sealed)
                if self.summary.error is None:
                    crash_point("before_delete")
                    self.delete(to_delete)
        finally:
            self.summary.seconds = time.monotonic() - t0
        return self.summary


def _first_line(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return lines[0][:300] if lines else "(no message)"


def queue_target(cfg: Config) -> tuple[str, str | None]:
    """(queue URL from SQS_QUEUE_URL, endpoint from AWS_ENDPOINT_URL else config)."""
    queue_url = os.environ.get("SQS_QUEUE_URL", "").strip()
    if not queue_url:
        raise ConfigError("SQS_QUEUE_URL is not set (environment or .env; see .env.example)")
    endpoint = os.environ.get("AWS_ENDPOINT_URL") or cfg.queue.endpoint_url
    return queue_url, endpoint


def acquire_lock(cfg: Config) -> Any:
    """The run lock (an flock on work/etl.lock, released by the OS even on kill -9)."""
    from filelock import FileLock, Timeout

    work = Path(cfg.work_dir)
    work.mkdir(parents=True, exist_ok=True)
    lock = FileLock(str(work / LOCK_NAME), timeout=0)
    try:
        lock.acquire()
    except Timeout:
        raise LockHeld(f"another etl.py run holds {work / LOCK_NAME}") from None
    return lock


def sqs_client(cfg: Config, endpoint_url: str | None) -> Any:
    """A boto3 SQS client with botocore's standard retries (throttling, 5xx) and timeouts that
    fit the long poll. Credentials come from boto3's usual chain and are never logged."""
    import boto3
    from botocore.config import Config as BotoConfig

    q = cfg.queue
    return boto3.client("sqs", region_name=q.region, endpoint_url=endpoint_url,
                        config=BotoConfig(retries={"max_attempts": 5, "mode": "standard"}, connect_timeout=5,
                                          read_timeout=q.wait_time_seconds + 10))


def dry_run_report(cfg: Config, queue_url: str, endpoint: str | None) -> str:
    """What a run would do, without receiving, writing or deleting anything."""
    work = Path(cfg.work_dir)
    pending = sorted(p.name for p in work.glob(BATCH_GLOB)) if work.exists() else []
    raw = work / RAW_NAME
    attrs = sqs_client(cfg, endpoint).get_queue_attributes(
        QueueUrl=queue_url, AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"]
    )["Attributes"]
    staged = sorted(p.name for p in Path(cfg.staging_dir).glob("*.jsonl"))
    return (f"dry run: queue has ~{attrs.get('ApproximateNumberOfMessages', '?')} visible and "
            f"~{attrs.get('ApproximateNumberOfMessagesNotVisible', '?')} in-flight messages; would read up to "
            f"{cfg.queue.max_messages_per_run} in at most {cfg.queue.max_seconds_per_run:.0f} s; "
            f"recovery: raw file {'present' if raw.exists() else 'none'}, {len(pending)} sealed batch(es); "
            f"{len(staged)} file(s) waiting in staging")
