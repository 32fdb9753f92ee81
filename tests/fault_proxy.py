"""A small fault-injecting HTTP proxy on 127.0.0.1 in front of the local SQS server.

Modes: ``pass`` forwards; ``vanish`` drops every connection without an answer (a server that
went away); ``error:<status>`` answers with that HTTP status and an AWS-shaped error body
(503 for 5xx, 400 + ThrottlingException for throttling). ``fail_after`` switches from ``pass``
to ``fail_mode`` after that many forwarded requests; ``fail_count`` limits how many requests fail
before it passes again (None: forever). ``rewrite``, if set, maps each forwarded response body
(bytes) to the bytes sent back (a server or proxy that alters what it delivers).
"""
from __future__ import annotations

import http.client
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlparse


class FaultProxy:
    def __init__(self, target_url: str) -> None:
        target = urlparse(target_url)
        self.target = (target.hostname, target.port)
        self.lock = threading.Lock()
        self.mode = "pass"
        self.fail_mode = "vanish"
        self.fail_after: int | None = None
        self.fail_count: int | None = None
        self.forwarded = 0
        self.failed = 0
        self.actions: list[str] = []
        self.rewrite = None
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):  # quiet
                pass

            def do_POST(self):
                proxy._handle(self)

            do_GET = do_POST

        # port 0: the kernel picks a free one as it binds (no gap for another process to take it)
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.httpd.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def start(self) -> "FaultProxy":
        self.thread.start()
        return self

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    def _decide(self) -> str:
        with self.lock:
            if self.mode == "pass" and self.fail_after is not None and self.forwarded >= self.fail_after:
                self.mode = self.fail_mode
            if self.mode != "pass":
                if self.fail_count is not None and self.failed >= self.fail_count:
                    self.mode, self.fail_after = "pass", None
                else:
                    self.failed += 1
                    return self.mode
            self.forwarded += 1
            return "pass"

    def _handle(self, h: BaseHTTPRequestHandler) -> None:
        length = int(h.headers.get("Content-Length") or 0)
        body = h.rfile.read(length) if length else b""
        self.actions.append(h.headers.get("X-Amz-Target", "") or body[:60].decode("latin-1"))
        decision = self._decide()
        if decision == "vanish":
            h.close_connection = True
            h.connection.close()
            return
        if decision.startswith("error:"):
            status = int(decision.split(":")[1])
            kind = "ThrottlingException" if status == 400 else "InternalFailure"
            payload = json.dumps({"__type": f"com.amazonaws.sqs#{kind}", "message": f"injected {kind}"}).encode()
            h.send_response(status)
            h.send_header("Content-Type", "application/x-amz-json-1.0")
            h.send_header("x-amzn-query-error", f"{kind};Sender")
            h.send_header("Content-Length", str(len(payload)))
            h.end_headers()
            h.wfile.write(payload)
            return
        conn = http.client.HTTPConnection(*self.target, timeout=60)
        headers = {k: v for k, v in h.headers.items() if k.lower() not in ("host", "connection")}
        conn.request(h.command, h.path, body=body, headers=headers)
        resp = conn.getresponse()
        data = resp.read()
        if self.rewrite is not None:
            data = self.rewrite(data)
        h.send_response(resp.status)
        for k, v in resp.getheaders():
            if k.lower() not in ("transfer-encoding", "connection", "content-length", "server", "date"):
                h.send_header(k, v)
        h.send_header("Content-Length", str(len(data)))
        h.end_headers()
        h.wfile.write(data)
        conn.close()
