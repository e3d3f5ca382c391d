"""A notification provider simulator: records notifications, deduplicates, fails on command.

Run it in-process (:class:`ProviderSim`, a thread) or as ``python -m tests.provider_sim
--port N``. ``POST /notifications`` records a notification once per ``Idempotency-Key``
(a repeated key answers 200 with the first record); ``POST /control {"mode": "fail" |
"stall" | "recover", "stall_s": S}`` switches behaviour (``fail``: 500s; ``stall``: sleep
``stall_s`` before answering); ``GET /notifications`` lists what was recorded, and
``attempts`` counts every request received.
"""

from __future__ import annotations

import argparse
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class _State:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.mode = "ok"
        self.stall_s = 5.0
        self.attempts = 0
        self.in_flight = 0
        self.most_in_flight = 0  # the most notification calls it was handling at once
        self.records: dict[str, dict[str, Any]] = {}


class _Handler(BaseHTTPRequestHandler):
    state: _State

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _reply(self, status: int, body: object) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _body(self) -> Any:
        length = int(self.headers.get("Content-Length") or 0)
        data = self.rfile.read(length)
        if len(data) < length:  # the caller died or gave up mid-request: nothing to record
            raise ConnectionError("the request's body never arrived")
        return json.loads(data or b"{}")

    def do_GET(self) -> None:
        if self.path != "/notifications":
            self._reply(404, {})
            return
        with self.state.lock:
            body = {"items": list(self.state.records.values()), "attempts": self.state.attempts}
        self._reply(200, body)

    def do_POST(self) -> None:
        if self.path == "/control":
            self._control(self._body())
        elif self.path == "/notifications":
            self._notify(self._body())
        else:
            self._reply(404, {})

    def _control(self, body: dict[str, Any]) -> None:
        with self.state.lock:
            self.state.mode = {"recover": "ok"}.get(body["mode"], body["mode"])
            self.state.stall_s = float(body.get("stall_s", self.state.stall_s))
        self._reply(200, {"mode": self.state.mode})

    def _notify(self, body: dict[str, Any]) -> None:
        with self.state.lock:
            self.state.in_flight += 1
            self.state.most_in_flight = max(self.state.most_in_flight, self.state.in_flight)
        try:
            self._handle_notification(body)
        finally:
            with self.state.lock:
                self.state.in_flight -= 1

    def _handle_notification(self, body: dict[str, Any]) -> None:
        with self.state.lock:
            self.state.attempts += 1
            mode, stall_s = self.state.mode, self.state.stall_s
        if mode == "fail":
            self._reply(500, {"error": "failing on purpose"})
            return
        if mode == "stall":
            time.sleep(stall_s)
        key = self.headers.get("Idempotency-Key")
        if not key:
            self._reply(400, {"error": "Idempotency-Key required"})
            return
        with self.state.lock:
            first = key not in self.state.records
            record = self.state.records.setdefault(
                key,
                {
                    "key": key,
                    "body": body,
                    "request_id": self.headers.get("X-Request-ID"),
                    "traceparent": self.headers.get("traceparent"),
                },
            )
        self._reply(201 if first else 200, record)


class _Server(ThreadingHTTPServer):
    request_queue_size = 128  # socketserver's 5 drops bursts of connections; servers keep more

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A caller that gave up on a stalled answer is expected here, not an error."""


class ProviderSim:
    """The simulator on a thread; ``url`` is its base URL."""

    def __init__(self, port: int = 0) -> None:
        self.state = _State()
        handler = type("Handler", (_Handler,), {"state": self.state})
        self._server = _Server(("127.0.0.1", port), handler)
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def start(self) -> ProviderSim:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def set_mode(self, mode: str, stall_s: float | None = None) -> None:
        with self.state.lock:
            self.state.mode = {"recover": "ok"}.get(mode, mode)
            if stall_s is not None:
                self.state.stall_s = stall_s

    def records(self) -> dict[str, dict[str, Any]]:
        with self.state.lock:
            return dict(self.state.records)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    sim = ProviderSim(parser.parse_args().port)
    print(sim.url, flush=True)
    sim._server.serve_forever()


if __name__ == "__main__":
    main()
