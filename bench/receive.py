"""etl.py's receive rate, against a local SQS-protocol server that is not the bottleneck.

moto slows down with queue depth (it scans the whole queue on every receive), so it cannot tell how
fast etl.py drains a backlog. This module serves the handful of SQS actions etl.py uses
(ReceiveMessage, DeleteMessageBatch, ChangeMessageVisibilityBatch, GetQueueAttributes; AWS JSON
1.0, as botocore speaks it) from an in-memory deque, on 127.0.0.1, in a thread; then it times
``etl.py --no-process`` draining N messages (ingest only: poll, seal, publish, remember, delete).

    python -m bench.receive --messages 20000        # prints messages/s; target: at least 300

Not a test and not an SQS emulator: no FIFO queues, no redrive, no message attributes beyond the
two etl.py asks for.
"""
from __future__ import annotations

import argparse
import collections
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


class Queue:
    """One in-memory queue: visible messages in a deque, in-flight ones by receipt handle."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.visible: collections.deque = collections.deque()
        self.inflight: dict[str, tuple[float, dict]] = {}

    def put(self, body: str) -> None:
        self.visible.append({"MessageId": str(uuid.uuid4()), "Body": body, "Sent": int(time.time() * 1000)})

    def receive(self, n: int, visibility: int) -> list[dict]:
        now = time.time()
        out = []
        with self.lock:
            for handle, (due, msg) in list(self.inflight.items()):   # visibility timeouts that ran out
                if due <= now:
                    del self.inflight[handle]
                    self.visible.append(msg)
            while self.visible and len(out) < n:
                msg = self.visible.popleft()
                handle = uuid.uuid4().hex
                self.inflight[handle] = (now + visibility, msg)
                out.append({"MessageId": msg["MessageId"], "ReceiptHandle": handle, "Body": msg["Body"],
                            "MD5OfBody": hashlib.md5(msg["Body"].encode()).hexdigest(),
                            "Attributes": {"SentTimestamp": str(msg["Sent"]), "ApproximateReceiveCount": "1"}})
        return out

    def delete(self, handles: list[str]) -> None:
        with self.lock:
            for h in handles:
                self.inflight.pop(h, None)

    def extend(self, handles: list[str], seconds: int) -> None:
        with self.lock:
            for h in handles:
                if h in self.inflight:
                    self.inflight[h] = (time.time() + seconds, self.inflight[h][1])


def serve(queue: Queue) -> ThreadingHTTPServer:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *_args) -> None:       # quiet
            pass

        def do_POST(self) -> None:                    # noqa: N802 - http.server's name
            action = self.headers.get("X-Amz-Target", "").rsplit(".", 1)[-1]
            req = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"{}")
            if action == "ReceiveMessage":
                msgs = queue.receive(int(req.get("MaxNumberOfMessages", 1)), int(req.get("VisibilityTimeout", 30)))
                if not msgs and req.get("WaitTimeSeconds"):
                    time.sleep(min(1.0, float(req["WaitTimeSeconds"])))     # a short long poll
                    msgs = queue.receive(int(req.get("MaxNumberOfMessages", 1)), int(req.get("VisibilityTimeout", 30)))
                body = {"Messages": msgs} if msgs else {}
            elif action == "DeleteMessageBatch":
                entries = req.get("Entries", [])
                queue.delete([e["ReceiptHandle"] for e in entries])
                body = {"Successful": [{"Id": e["Id"]} for e in entries], "Failed": []}
            elif action == "ChangeMessageVisibilityBatch":
                entries = req.get("Entries", [])
                for e in entries:
                    queue.extend([e["ReceiptHandle"]], int(e.get("VisibilityTimeout", 30)))
                body = {"Successful": [{"Id": e["Id"]} for e in entries], "Failed": []}
            elif action == "GetQueueAttributes":
                body = {"Attributes": {"ApproximateNumberOfMessages": str(len(queue.visible)),
                                       "ApproximateNumberOfMessagesNotVisible": str(len(queue.inflight))}}
            else:
                self.send_response(400)
                self.end_headers()
                return
            data = json.dumps(body).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/x-amz-json-1.0")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def drain(n: int) -> dict:
    """Put ``n`` simulated messages on an in-memory queue and time ``etl.py --no-process``
    draining it. Returns ok, seconds (etl.py's own wall time), written, left (on the queue),
    the one-line report and etl.py's stderr."""
    from nelo_etl.simulate import SimConfig, Simulator

    queue = Queue()
    messages = Simulator(SimConfig(events=n, seed=3)).messages()[:n]
    for m in messages:
        queue.put(m.body)
    server = serve(queue)
    work = Path(tempfile.mkdtemp(prefix="nelo-receive-"))
    try:
        for name in ("staging", "processed", "archive", "dead_letter", "warehouse"):
            (work / name).mkdir()
        cfg = json.loads((ROOT / "config.json").read_text(encoding="utf-8"))
        cfg["queue"].update(wait_time_seconds=1, max_messages_per_run=len(messages) + 10)
        cfg["lakehouse_path"] = None
        (work / "config.json").write_text(json.dumps(cfg), encoding="utf-8")
        env = dict(os.environ, AWS_ACCESS_KEY_ID="bench", AWS_SECRET_ACCESS_KEY="bench", AWS_DEFAULT_REGION="us-east-1",
                   SQS_QUEUE_URL=f"http://127.0.0.1:{server.server_port}/000000000000/bench",
                   AWS_ENDPOINT_URL=f"http://127.0.0.1:{server.server_port}")
        started = time.perf_counter()
        out = subprocess.run([sys.executable, str(ROOT / "etl.py"), "--config", str(work / "config.json"),
                              "--no-process", "--json"], env=env, capture_output=True, text=True, timeout=3600)
        seconds = time.perf_counter() - started
        summary = json.loads(out.stdout) if out.stdout.strip().startswith("{") else {}
        written = sum(1 for p in (work / "staging").glob("*.jsonl") for _ in open(p, encoding="utf-8"))
    finally:
        server.shutdown()
        shutil.rmtree(work, ignore_errors=True)
    left = len(queue.visible) + len(queue.inflight)
    report = (f"receive: {len(messages):,} messages; etl.py --no-process rc={out.returncode} in {seconds:.1f} s "
              f"= {written / seconds:,.0f} messages/s written (target >= 300); left on the queue: {left}; "
              f"summary new={summary.get('new')} deleted={summary.get('deleted')}")
    return {"ok": out.returncode == 0 and written == len(messages), "seconds": seconds, "written": written,
            "left": left, "report": report, "stderr": out.stderr}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=20000)
    args = parser.parse_args(argv)
    result = drain(args.messages)
    print(result["report"])
    if not result["ok"]:
        print(result["stderr"][-2000:], file=sys.stderr)
    return 0 if result["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
