"""A real HTTP server on 127.0.0.1 that records what it receives: the receiving end of outbound calls
(webhooks, ATS callbacks) in tests."""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from poise_devstack.ports import LOCALHOST


@dataclass(frozen=True)
class Recorded:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes


class RecordingServer:
    """Records each POST, PUT and PATCH; answers the n-th (from 1) with ``status(n)``, 200 by default.

    A context manager: it serves from construction until the ``with`` block ends.
    """

    def __init__(self, status: Callable[[int], int] = lambda n: 200) -> None:
        self.requests: list[Recorded] = []
        self.status = status
        recorder = self

        class Handler(BaseHTTPRequestHandler):
            def _record(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                recorder.requests.append(Recorded(self.command, self.path, dict(self.headers), body))
                self.send_response(recorder.status(len(recorder.requests)))
                self.send_header("Content-Length", "0")
                self.end_headers()

            do_POST = do_PUT = do_PATCH = _record  # noqa: N815 - the stdlib's names

            def log_message(self, *args) -> None:
                pass

        self.server = ThreadingHTTPServer((LOCALHOST, 0), Handler)
        self.port: int = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def url(self, path: str = "/") -> str:
        return f"http://{LOCALHOST}:{self.port}{path}"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def __enter__(self) -> "RecordingServer":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
