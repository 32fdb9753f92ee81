"""A local SQS-protocol server (moto's standalone server) on 127.0.0.1, for the demo and the tests.

moto is a development dependency (requirements-dev.txt); production talks to AWS SQS.
"""
from __future__ import annotations

import os
import queue
import re
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import boto3

CREDENTIALS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
               "AWS_DEFAULT_REGION": "us-east-1"}


#: what moto_server (werkzeug) prints once it listens: the port the kernel gave it
_RUNNING_ON = re.compile(rb"Running on http://127\.0\.0\.1:(\d+)")


class MotoServer:
    """``moto_server`` in a child process, bound to 127.0.0.1 on a port of its own.

    The child binds port 0 and says which port it got. Picking a free port here and passing it
    on would leave a gap between the two in which another process (a second test worker's
    server) can take it, and the readiness check would then be answered by that other server."""

    def __init__(self, env: dict[str, str] | None = None) -> None:
        self.port: int | None = None
        self.url = ""
        self.extra_env = env or {}
        self.proc: subprocess.Popen | None = None

    def start(self) -> "MotoServer":
        exe = Path(sys.executable).with_name("moto_server")
        cmd = [str(exe)] if exe.exists() else [sys.executable, "-m", "moto.server"]
        env = dict(os.environ, **CREDENTIALS, **self.extra_env)
        self.proc = subprocess.Popen(cmd + ["-H", "127.0.0.1", "-p", "0"], env=env,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        told: "queue.Queue[int | None]" = queue.Queue()
        threading.Thread(target=_read_port, args=(self.proc.stderr, told), daemon=True,
                         name="moto-stderr").start()
        deadline = time.monotonic() + 30
        try:
            port = told.get(timeout=deadline - time.monotonic())   # one 30 s bound for the whole start
        except queue.Empty:
            self.stop()
            raise RuntimeError("moto_server did not start in 30 s") from None
        if port is None:
            self.stop()
            raise RuntimeError("moto_server exited at start")
        self.port, self.url = port, f"http://127.0.0.1:{port}"
        while time.monotonic() < deadline:
            try:
                urllib.request.urlopen(self.url + "/moto-api/", timeout=1).read()
                return self
            except OSError:
                if self.proc.poll() is not None:
                    raise RuntimeError("moto_server exited at start")
                time.sleep(0.1)
        self.stop()
        raise RuntimeError("moto_server did not start in 30 s")

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def reset(self) -> None:
        urllib.request.urlopen(urllib.request.Request(self.url + "/moto-api/reset", method="POST"), timeout=5)

    def __enter__(self) -> "MotoServer":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def client(self, **creds: str):
        return boto3.client("sqs", endpoint_url=self.url, region_name="us-east-1",
                            aws_access_key_id=creds.get("key", "testing"),
                            aws_secret_access_key=creds.get("secret", "testing"))


def _read_port(stream, told: "queue.Queue[int | None]") -> None:
    """Put the port the server reports on ``told`` (None if it exits first), then read its
    output to the end: it logs every request there, and a full pipe would stall it."""
    port = None
    for line in stream:
        if port is None and (match := _RUNNING_ON.search(line)):
            port = int(match.group(1))
            told.put(port)
    if port is None:
        told.put(None)
