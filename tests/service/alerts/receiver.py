"""A webhook receiver on 127.0.0.1 for tests: scripted answers, every request recorded."""

from __future__ import annotations

import json
import threading
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass(frozen=True)
class Request:
    status: int  # what the receiver answered
    headers: dict[str, str]
    body: str

    @property
    def event_id(self) -> int:
        return int(json.loads(self.body)["data"]["id"])


class Receiver:
    """Answers the next scripted statuses, then `default_status`; can go down and come back."""

    def __init__(self) -> None:
        self.answers: deque[int] = deque()
        self.default_status = 200
        self.requests: list[Request] = []
        self.changed = threading.Condition()
        self.port = 0
        self.server: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hooks/tianxun"

    def start(self) -> None:
        """Listen (again on the same port after `stop`)."""
        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), self._handler())
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        """Go down: connections are refused until `start`."""
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()
            self.server = None

    def delivered(self) -> list[Request]:
        with self.changed:
            return [r for r in self.requests if 200 <= r.status < 300]

    def wait_for(self, condition: Callable[[Receiver], bool], *, timeout: float = 20.0) -> None:
        with self.changed:
            if not self.changed.wait_for(lambda: condition(self), timeout=timeout):
                raise TimeoutError(f"receiver condition not met; got {len(self.requests)} requests")

    def _record(self, request: Request) -> None:
        with self.changed:
            self.requests.append(request)
            self.changed.notify_all()

    def _next_status(self) -> int:
        with self.changed:
            return self.answers.popleft() if self.answers else self.default_status

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length", "0"))).decode()
                status = receiver._next_status()
                headers = {k.lower(): v for k, v in self.headers.items()}
                # Record before answering: the sender posts the next event only after this
                # answer, so the record keeps the order in which events were sent.
                receiver._record(Request(status, headers, body))
                self.send_response(status)
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass  # keep test output clean

        return Handler
