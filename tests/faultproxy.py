"""A fault-injecting HTTP proxy on 127.0.0.1, in front of an S3 endpoint such as moto's server.

The scan's `--endpoint-url` points at the proxy. Each request is either
forwarded to the upstream endpoint unchanged or given a fault instead of a response. A
seeded random generator picks the faulty requests, and the faults take the
kinds in turn, so that three faults in a row cover all of them:

- "slowdown": 503 with the S3 error document of code SlowDown;
- "internal": 500 with the S3 error document of code InternalError;
- "drop": the connection is closed after the request is read, with no response.

`fail_keys` makes every request whose path contains one of the strings fail
with "internal", for an object that never becomes readable. `injected` counts
the faults by kind, and `requests` counts every request received.
"""

from __future__ import annotations

import http.client
import http.server
import random
import socket
import threading
from collections import Counter
from urllib.parse import urlsplit

FAULT_KINDS = ("slowdown", "internal", "drop")

_ERROR_DOCUMENTS = {
    "slowdown": (503, "SlowDown", "Please reduce your request rate."),
    "internal": (500, "InternalError", "We encountered an internal error. Please try again."),
}

# Response headers that describe the upstream connection, not the response; the proxy sets its own.
_HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "content-length"}


class FaultProxy:
    """A threaded HTTP proxy that forwards to `upstream` and injects faults on a seeded share of requests."""

    def __init__(
        self,
        upstream: str,
        fault_rate: float = 0.0,
        seed: int = 0,
        kinds: tuple[str, ...] = FAULT_KINDS,
        fail_keys: tuple[str, ...] = (),
    ):
        unknown = set(kinds) - set(FAULT_KINDS)
        if unknown:
            raise ValueError(f"unknown fault kinds {sorted(unknown)}: use some of {FAULT_KINDS}")
        parts = urlsplit(upstream)
        self.upstream_host = parts.hostname
        self.upstream_port = parts.port
        self.fault_rate = fault_rate
        self.kinds = kinds
        self.fail_keys = fail_keys
        self.injected: Counter[str] = Counter()
        self.requests = 0
        self._random = random.Random(seed)
        self._lock = threading.Lock()
        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), self._handler_class())
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> FaultProxy:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=10)

    def __enter__(self) -> FaultProxy:
        return self.start()

    def __exit__(self, *_) -> None:
        self.stop()

    def choose_fault(self, path: str) -> str | None:
        """Return the fault kind for one request, or None to forward it; counts both."""
        with self._lock:
            self.requests += 1
            if any(key in path for key in self.fail_keys):
                kind = "internal"
            elif self._random.random() < self.fault_rate:
                kind = self.kinds[sum(self.injected.values()) % len(self.kinds)]
            else:
                return None
            self.injected[kind] += 1
            return kind

    def _handler_class(self):
        proxy = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *_) -> None:
                pass

            def _handle(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                fault = proxy.choose_fault(self.path)
                if fault == "drop":
                    self.close_connection = True
                    self.connection.shutdown(socket.SHUT_RDWR)
                    return
                if fault is not None:
                    self._send_error_document(*_ERROR_DOCUMENTS[fault])
                    return
                self._forward(body)

            do_GET = do_PUT = do_POST = do_HEAD = do_DELETE = _handle

            def _send_error_document(self, status: int, code: str, message: str) -> None:
                document = (
                    '<?xml version="1.0" encoding="UTF-8"?>\n'
                    f"<Error><Code>{code}</Code><Message>{message}</Message>"
                    "<RequestId>faultproxy</RequestId></Error>"
                ).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/xml")
                self.send_header("Content-Length", str(len(document)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(document)

            def _forward(self, body: bytes) -> None:
                connection = http.client.HTTPConnection(proxy.upstream_host, proxy.upstream_port, timeout=60)
                try:
                    # The Host header stays the proxy's, as the client signed it; moto does not check signatures.
                    connection.request(self.command, self.path, body=body or None, headers=dict(self.headers))
                    response = connection.getresponse()
                    payload = response.read()
                finally:
                    connection.close()
                self.send_response(response.status, response.reason)
                for name, value in response.getheaders():
                    if name.lower() not in _HOP_BY_HOP:
                        self.send_header(name, value)
                # A HEAD response has no body but gives the object's length.
                length = response.getheader("Content-Length") if self.command == "HEAD" else None
                self.send_header("Content-Length", length or str(len(payload)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(payload)

        return Handler
