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

import hashlib
import json
import logging
import os
import shutil
import signal
import sys
import time
import uuid
from collections import deque
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from .cli import first_line
from .config import Config, ConfigError

log = logging.getLogger("nelo_etl.ingest")

RAW_NAME = "raw.jsonl.part"
BATCH_GLOB = "processing_batch_*.jsonl"
LOCK_NAME = "etl.lock"


class LockHeld(Exception):
    """Another run holds the lock. ``stale``: it has held it longer than a run can last."""

    def __init__(self, message: str, stale: bool = False) -> None:
        super().__init__(message)
        self.stale = stale


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


def encode_text(text: str) -> bytes:
    """UTF-8 bytes of text as received. A server can deliver lone surrogates (U+DCFF): those
    become the invalid bytes they stand for, which staging dead-letters as ``invalid_utf8``;
    writing never fails on them (a failure here would keep the message on the queue forever)."""
    try:
        return text.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:
        return text.encode("utf-8", "surrogatepass")


def body_digest(body: str) -> str:
    """What the seen-cache remembers of a message: a hash of its body as written."""
    return hashlib.sha256(encode_text(body)).hexdigest()[:32]


def message_digests_of(path: Path) -> list[tuple[str, str]]:
    """(MessageId, body digest) of every line of a batch file. Never fails on a line: undecodable
    bytes are read as surrogate escapes, and a line that is not a message envelope is skipped
    here (staging dead-letters it); a failure would make recovery fail on every run."""
    pairs = []
    with open(path, "rb") as fh:
        for number, raw in enumerate(fh, 1):
            if not raw.strip():
                continue
            try:
                obj = json.loads(raw.decode("utf-8", "surrogateescape"))
                pairs.append((str(obj["MessageId"]), body_digest(str(obj.get("Body", "")))))
            except (ValueError, KeyError, TypeError, AttributeError):
                log.warning("%s line %d is not a message envelope; staging will dead-letter it", path.name, number)
    return pairs


# --------------------------------------------------------------------------------------------
# the run

@dataclass
class RunSummary:
    received: int = 0
    new: int = 0
    skipped_seen: int = 0
    conflicts: int = 0              # a seen MessageId with another body: written again
    deleted: int = 0
    extended: int = 0               # visibility extensions of messages this run held
    stopped: str = "-"              # why polling stopped: queue_empty|max_messages|max_seconds|error|terminated
    recovered_batches: list[str] = field(default_factory=list)
    batch_file: str | None = None
    seconds: float = 0.0
    delete_denied: bool = False
    error: str | None = None

    def line(self) -> str:
        return (f"received={self.received} new={self.new} skipped_seen={self.skipped_seen} "
                f"conflicts={self.conflicts} deleted={self.deleted} stopped={self.stopped} "
                f"batch={self.batch_file or '-'} seconds={self.seconds:.1f}"
                + (f" recovered={len(self.recovered_batches)}" if self.recovered_batches else "")
                + (" delete=denied" if self.delete_denied else ""))

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


class Ingestor:
    """One etl.py run against one queue."""

    def __init__(self, cfg: Config, queue_url: str, endpoint_url: str | None,
                 should_stop: Any = None) -> None:
        self.cfg = cfg
        self.should_stop = should_stop or (lambda: False)   # SIGTERM asked for a stop
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
        for message_id, digest in message_digests_of(sealed):
            self.seen.set(message_id, digest, expire=ttl)
        sealed.unlink()
        fsync_dir(self.work)

    def poll(self, raw_fh: Any, to_delete: list[dict[str, str]]) -> None:
        """Receive until the queue is empty, a per-run limit is reached or a stop is asked for.
        Sets ``summary.stopped`` to the reason."""
        q = self.cfg.queue
        started = time.monotonic()
        in_this_run: dict[str, str] = {}      # MessageId -> body digest, written by this run
        received_this_run: set[str] = set()   # every MessageId this run received
        held: deque[list[Any]] = deque()      # [entry, visible-again deadline] of undeleted messages, by deadline
        while True:
            if self.should_stop():
                self.summary.stopped = "terminated"
                break
            if self.summary.received >= q.max_messages_per_run:
                self.summary.stopped = "max_messages"
                break
            if time.monotonic() - started >= q.max_seconds_per_run:
                self.summary.stopped = "max_seconds"
                break
            self.keep_hidden(held)
            want = min(10, q.max_messages_per_run - self.summary.received)
            asked = time.monotonic()
            resp = self.sqs.receive_message(
                QueueUrl=self.queue_url, MaxNumberOfMessages=want, WaitTimeSeconds=q.wait_time_seconds,
                VisibilityTimeout=q.visibility_timeout_seconds,
                MessageSystemAttributeNames=["SentTimestamp", "ApproximateReceiveCount"])
            messages = resp.get("Messages", [])
            if all(m["MessageId"] in received_this_run for m in messages):
                self.summary.stopped = "queue_empty"   # empty, or only what this run already had
                break
            received_this_run.update(m["MessageId"] for m in messages)
            already_durable: list[dict[str, str]] = []
            for m in messages:
                self.summary.received += 1
                mid = m["MessageId"]
                digest = body_digest(m["Body"])
                entry = {"Id": "0", "ReceiptHandle": m["ReceiptHandle"]}
                if in_this_run.get(mid) == digest:
                    # redelivered within this run: written but not yet durable; delete after sealing
                    self.summary.skipped_seen += 1
                    to_delete.append(entry)
                    held.append([entry, asked + q.visibility_timeout_seconds])
                    continue
                known = None if mid in in_this_run else self.seen.get(mid)
                if known is not None and (known is True or known == digest):
                    # durable in an earlier batch file (True: remembered before bodies were hashed)
                    self.summary.skipped_seen += 1
                    already_durable.append(entry)
                    continue
                if known is not None or mid in in_this_run:
                    # the same MessageId with another body (a misbehaving proxy or server): write it;
                    # the warehouse deduplicates by event_id, so a true duplicate still counts once
                    self.summary.conflicts += 1
                    log.warning("MessageId %s was seen before with another body; writing it again", mid)
                in_this_run[mid] = digest
                line = json.dumps({"MessageId": mid, "Attributes": m.get("Attributes", {}), "Body": m["Body"]},
                                  ensure_ascii=False)
                raw_fh.write(encode_text(line) + b"\n")
                self.summary.new += 1
                to_delete.append(entry)
                held.append([entry, asked + q.visibility_timeout_seconds])
            raw_fh.flush()
            crash_point("while_polling")
            if already_durable:
                self.delete(already_durable)

    def keep_hidden(self, held: deque[list[Any]]) -> None:
        """Extend the visibility of the messages this run holds (received, not yet deleted) that
        could come back before the next ReceiveMessage returns: so a run longer than
        ``visibility_timeout_seconds`` never sees its own messages come back. ``held`` is ordered by
        deadline (an extended message gets the latest one), so this looks only at those due.
        Best effort: a failed extension only means the message may come back and be skipped as seen."""
        q = self.cfg.queue
        now = time.monotonic()
        horizon = now + q.wait_time_seconds + min(5.0, q.visibility_timeout_seconds / 2)
        due: list[list[Any]] = []
        while held and held[0][1] < horizon:
            due.append(held.popleft())
        for i in range(0, len(due), 10):
            chunk = due[i:i + 10]
            try:
                resp = self.sqs.change_message_visibility_batch(QueueUrl=self.queue_url, Entries=[
                    {"Id": str(j), "ReceiptHandle": h[0]["ReceiptHandle"], "VisibilityTimeout": q.visibility_timeout_seconds}
                    for j, h in enumerate(chunk)])
            except Exception as exc:  # noqa: BLE001 - the next receive reports a real queue failure
                log.warning("could not extend the visibility of %d messages: %s", len(due) - i, first_line(exc))
                return
            for ok in resp.get("Successful", []):
                entry = chunk[int(ok["Id"])]
                entry[1] = now + q.visibility_timeout_seconds
                held.append(entry)
                self.summary.extended += 1
            if resp.get("Failed"):
                log.warning("%d visibility extensions failed; those messages may come back and be skipped as seen",
                            len(resp["Failed"]))

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
                    self.summary.error = f"queue failure: {type(exc).__name__}: {first_line(exc)}"
                    self.summary.stopped = "error"
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


def queue_target(cfg: Config) -> tuple[str, str | None]:
    """(queue URL from SQS_QUEUE_URL, endpoint from AWS_ENDPOINT_URL else config)."""
    queue_url = os.environ.get("SQS_QUEUE_URL", "").strip()
    if not queue_url:
        raise ConfigError("SQS_QUEUE_URL is not set (environment or .env; see .env.example)")
    endpoint = os.environ.get("AWS_ENDPOINT_URL") or cfg.queue.endpoint_url
    return queue_url, endpoint


OWNER_NAME = "etl.lock.owner"


def max_run_seconds(cfg: Config) -> float:
    """How long a run can hold the lock, from the config: polling lasts at most
    ``max_seconds_per_run`` plus one long poll; loading and publishing get as long again, plus
    ``db_lock_timeout_seconds`` for each of their two waits on the database. A lock held longer
    belongs to a hung run. (Defaults: 2 x 620 + 120 = 1,360 s, under two 15-minute slots.)"""
    q = cfg.queue
    return 2 * (q.max_seconds_per_run + q.wait_time_seconds) + 2 * cfg.db_lock_timeout_seconds


def try_lock(folder: Path, name: str) -> Any:
    """An OS file lock on ``folder/name`` (created if missing), taken without waiting; None when
    another process holds it. The OS releases it even on kill -9."""
    from filelock import FileLock, Timeout

    folder.mkdir(parents=True, exist_ok=True)
    lock = FileLock(str(folder / name), timeout=0)
    try:
        lock.acquire()
    except Timeout:
        return None
    return lock


def acquire_lock(cfg: Config) -> Any:
    """The run lock (an flock on work/etl.lock, released by the OS even on kill -9). The holder
    notes its PID and start in work/etl.lock.owner, so a run that finds the lock held can tell a
    slow run (LockHeld: skip) from a hung one (LockHeld with ``stale``: an error)."""
    work = Path(cfg.work_dir)
    lock = try_lock(work, LOCK_NAME)
    if lock is None:
        raise _lock_held(cfg, work)
    owner = {"pid": os.getpid(), "since_utc": datetime.now(timezone.utc).isoformat(timespec="seconds"),
             "since_epoch": time.time()}
    tmp = work / f".{OWNER_NAME}.tmp"
    tmp.write_text(json.dumps(owner), encoding="utf-8")
    os.replace(tmp, work / OWNER_NAME)
    return lock


def release_lock(lock: Any, cfg: Config) -> None:
    """Drop the owner note, then the lock."""
    try:
        (Path(cfg.work_dir) / OWNER_NAME).unlink()
    except FileNotFoundError:
        pass
    lock.release()


def _lock_held(cfg: Config, work: Path) -> LockHeld:
    try:
        owner = json.loads((work / OWNER_NAME).read_text(encoding="utf-8"))
        pid, since, age = owner["pid"], owner["since_utc"], time.time() - float(owner["since_epoch"])
    except (OSError, ValueError, KeyError, TypeError):
        return LockHeld(f"another etl.py run holds {work / LOCK_NAME}")
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:       # a note left by a killed run; the new holder has not written yet
        return LockHeld(f"another etl.py run holds {work / LOCK_NAME}")
    except (PermissionError, ValueError):
        pass
    limit = max_run_seconds(cfg)
    if age > limit:
        return LockHeld(f"etl.py run pid {pid} has held {work / LOCK_NAME} since {since} ({age:.0f} s, longer "
                        f"than a run can last: {limit:.0f} s); it is probably hung: check it, kill it if so",
                        stale=True)
    return LockHeld(f"another etl.py run (pid {pid}, since {since}) holds {work / LOCK_NAME}")


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
