"""A minimal OTLP/HTTP trace receiver on loopback, for the bench and the tracing e2e test.

Not a collector: it takes ``POST /v1/traces`` (protobuf, optionally gzip), decodes each
``ExportTraceServiceRequest`` with the OpenTelemetry protobuf classes, answers 200, and keeps the
spans (``keep=True``: the e2e test reads them) or only counts them (the bench). A real exporter
talking to a real HTTP server is what the worker does in production; an in-memory exporter
would leave the exporter, its encoding and its batching untested.

The bench runs it as a process of its own (``ReceiverProcess``; ``python
scripts/otlp_receiver.py --port N``), as a collector is. In the bench's process its decoding
took the interpreter from the bench's outcome reader, and answered the worker's POSTs late:
side by side, the traced worker's extra CPU per user read +3.3, +3.3, +3.2 and +1.5 % with the
receiver in the bench's process and +2.7, +2.4, +1.6 and +0.8 % with it in its own
(2026-12-04, 50,000 users a round).
"""

from __future__ import annotations

import argparse
import gzip
import json
import select
import signal
import subprocess
import sys
import tempfile
import threading
import urllib.request
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import IO, Any

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)


@dataclass(frozen=True)
class ReceivedSpan:
    """One exported span, ids in lowercase hex as in ``traceparent``."""

    name: str
    trace_id: str
    span_id: str
    parent_span_id: str  # "" for a root
    kind: int
    links: tuple[tuple[str, str], ...]  # (trace id, span id) of each link
    attributes: dict[str, Any]
    service: str
    status_code: int


def _value(any_value: Any) -> Any:
    kind = any_value.WhichOneof("value")
    return getattr(any_value, kind) if kind else None


class OtlpReceiver:
    """``with OtlpReceiver(port) as receiver:`` serves ``receiver.endpoint`` on 127.0.0.1."""

    def __init__(self, port: int, *, keep: bool = True) -> None:
        self.keep = keep
        self.spans: list[ReceivedSpan] = []
        self.count = 0
        self.requests = 0
        self._lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            # Keep-alive, as a collector does: HTTP/1.0 (the default here) closed the connection
            # after each export, and the worker paid a new TCP connection per POST.
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                if self.headers.get("Content-Encoding") == "gzip":
                    body = gzip.decompress(body)
                receiver._take(body)
                answer = ExportTraceServiceResponse().SerializeToString()
                self.send_response(200)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            def do_GET(self) -> None:
                if self.path != RECEIVED_PATH:
                    self.send_error(404)
                    return
                answer = json.dumps(receiver.received()).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            def log_message(self, format: str, *args: Any) -> None:
                return None  # one line per export would drown the test's output

        self._server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.port = self._server.server_address[1]  # the one bound, when ``port`` is 0
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def endpoint(self) -> str:
        """The value of ``OTEL_EXPORTER_OTLP_ENDPOINT`` (the exporter adds ``/v1/traces``)."""
        return f"http://127.0.0.1:{self.port}"

    def _take(self, body: bytes) -> None:
        request = ExportTraceServiceRequest.FromString(body)
        spans = []
        count = 0
        for resource_spans in request.resource_spans:
            service = next(
                (
                    _value(a.value)
                    for a in resource_spans.resource.attributes
                    if a.key == "service.name"
                ),
                "",
            )
            for scope_spans in resource_spans.scope_spans:
                count += len(scope_spans.spans)
                if not self.keep:
                    continue
                for span in scope_spans.spans:
                    spans.append(
                        ReceivedSpan(
                            name=span.name,
                            trace_id=span.trace_id.hex(),
                            span_id=span.span_id.hex(),
                            parent_span_id=span.parent_span_id.hex(),
                            kind=span.kind,
                            links=tuple((k.trace_id.hex(), k.span_id.hex()) for k in span.links),
                            attributes={a.key: _value(a.value) for a in span.attributes},
                            service=service,
                            status_code=span.status.code,
                        )
                    )
        with self._lock:
            self.spans.extend(spans)
            self.count += count
            self.requests += 1

    def received(self) -> dict[str, int]:
        """What came so far: spans, and the export requests that carried them."""
        with self._lock:
            return {"spans": self.count, "requests": self.requests}

    def __enter__(self) -> OtlpReceiver:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()


RECEIVED_PATH = "/received"  # GET: {"spans": …, "requests": …} so far, as JSON


class ReceiverError(Exception):
    """The receiver process did not start, or stopped answering."""


class ReceiverProcess:
    """``with ReceiverProcess() as receiver:`` runs a counting receiver (``keep=False``) in a
    process of its own, on a free port of 127.0.0.1 that it picks and says on its standard
    output; ``receiver.count`` asks it."""

    def __init__(self, *, start_timeout_s: float = 30) -> None:
        self.port = 0
        self._start_timeout_s = start_timeout_s
        self._process: subprocess.Popen[bytes] | None = None
        # Its errors go to a file, not a pipe: a pipe nobody reads during a long bench would
        # fill up and stop the receiver at its next traceback.
        self._errors: IO[bytes] | None = None

    @property
    def endpoint(self) -> str:
        """The value of ``OTEL_EXPORTER_OTLP_ENDPOINT`` (the exporter adds ``/v1/traces``)."""
        return f"http://127.0.0.1:{self.port}"

    @property
    def count(self) -> int:
        """Spans received so far."""
        try:
            url = self.endpoint + RECEIVED_PATH
            with urllib.request.urlopen(url, timeout=5) as answer:
                return int(json.load(answer)["spans"])
        except (OSError, ValueError, KeyError) as exc:
            raise ReceiverError(f"the OTLP receiver on port {self.port}: {exc}") from None

    def __enter__(self) -> ReceiverProcess:
        self._errors = errors = tempfile.TemporaryFile()
        self._process = process = subprocess.Popen(
            [sys.executable, str(Path(__file__).resolve()), "--port", "0"],
            stdout=subprocess.PIPE,
            stderr=errors,
        )
        assert process.stdout is not None
        ready, _, _ = select.select([process.stdout], [], [], self._start_timeout_s)
        said = process.stdout.readline().decode(errors="replace").split() if ready else []
        if said[:1] == [LISTENING] and len(said) == 2 and said[1].isdigit():
            self.port = int(said[1])
            return self
        self._stop(process)
        if not ready:
            why = f"it said nothing within {self._start_timeout_s:.0f} s"
        else:
            errors.seek(0)
            lines = errors.read().decode(errors="replace").strip().splitlines()
            why = lines[-1] if lines else f"it exited with code {process.returncode}"
        self.__exit__()
        raise ReceiverError(f"the OTLP receiver did not start: {why}")

    def __exit__(self, *exc: object) -> None:
        process, self._process = self._process, None
        if process is not None:
            self._stop(process)
            if process.stdout is not None:
                process.stdout.close()
        if self._errors is not None:
            self._errors.close()
            self._errors = None

    @staticmethod
    def _stop(process: subprocess.Popen[bytes]) -> None:
        if process.poll() is not None:
            return
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


LISTENING = "listening"  # the receiver process's first line: "listening PORT"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="A counting OTLP/HTTP trace receiver.")
    parser.add_argument("--port", type=int, required=True, help="0: a free one, said at start")
    port = parser.parse_args(argv).port
    stopped = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stopped.set())
    with OtlpReceiver(port, keep=False) as receiver:
        print(LISTENING, receiver.port, flush=True)
        try:
            stopped.wait()
        except KeyboardInterrupt:
            pass


if __name__ == "__main__":
    main()
