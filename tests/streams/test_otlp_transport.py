"""The exporter's http.client transport: against a real HTTP server on loopback, through the
OTLP exporter's own client (its retries, its Retry-After), and where it leaves a URL to
``requests`` (a proxy, netrc credentials, a CA bundle in the environment)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.exporter.http.transport._base import BaseHTTPResult, BaseHTTPTransport

from streams.otlp_transport import (
    HttpClientResult,
    HttpClientTransport,
    new_span_exporter,
    tls_settings,
)
from streams.span_export import private_post
from streams.stack.ports import free_port


@dataclass
class Server:
    """Answers POSTs with the statuses queued in ``answers`` (then 200), and keeps what came:
    each request's body and the client port it came from (one port: one connection)."""

    port: int
    answers: list[tuple[int, dict[str, str]]] = field(default_factory=list)
    bodies: list[bytes] = field(default_factory=list)
    client_ports: list[int] = field(default_factory=list)
    headers: list[dict[str, str]] = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1/traces"


@pytest.fixture
def server() -> Iterator[Server]:
    state = Server(free_port())

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive, as a collector does

        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            state.bodies.append(body)
            state.client_ports.append(self.client_address[1])
            state.headers.append({name.lower(): value for name, value in self.headers.items()})
            status, extra = state.answers.pop(0) if state.answers else (200, {})
            self.send_response(status)
            for name, value in extra.items():
                self.send_header(name, value)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"ok")

        def log_message(self, format: str, *args: Any) -> None:
            return None

    httpd = ThreadingHTTPServer(("127.0.0.1", state.port), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield state
    finally:
        httpd.shutdown()
        httpd.server_close()


class Recorded(BaseHTTPTransport):
    """The fallback: says what it was asked, sends nothing."""

    def __init__(self) -> None:
        self.urls: list[str] = []
        self.closed = False

    def request(
        self,
        method: str,
        url: str,
        *,
        headers: dict[str, str] | None = None,
        timeout: float | None = None,
        data: bytes | None = None,
    ) -> BaseHTTPResult:
        self.urls.append(url)
        return HttpClientResult(status_code=200, reason="OK")

    def is_connection_error(self, exception: Exception | None) -> bool:
        return False

    def close(self) -> None:
        self.closed = True


@pytest.fixture(autouse=True)
def plain_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY", "REQUESTS_CA_BUNDLE"):
        for variant in (name, name.lower()):
            monkeypatch.delenv(variant, raising=False)
    monkeypatch.delenv("CURL_CA_BUNDLE", raising=False)
    monkeypatch.setenv("NETRC", str(tmp_path / "no-netrc"))


def test_posts_go_over_one_kept_alive_connection(server: Server) -> None:
    fallback = Recorded()
    transport = HttpClientTransport(fallback=fallback)
    for n in range(5):
        result = transport.request("POST", server.url, data=b"x" * n, timeout=5)
        assert (result.status_code, result.content()) == (200, b"ok")
    assert server.bodies == [b"x" * n for n in range(5)]
    assert len(set(server.client_ports)) == 1
    assert fallback.urls == []
    transport.close()
    assert fallback.closed


def test_the_exporter_retries_through_it_after_retry_after(
    monkeypatch: pytest.MonkeyPatch, server: Server
) -> None:
    """A 503 with Retry-After, then a 200: the exporter's own retry, through this transport,
    read the header by its lowercase name."""
    server.answers.append((503, {"Retry-After": "0"}))
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", server.url)
    exporter = new_span_exporter()
    post = private_post(exporter)
    assert post is not None
    assert post(b"spans").success
    assert server.bodies == [b"spans", b"spans"]
    assert server.headers[0]["content-type"] == "application/x-protobuf"
    exporter.shutdown()


def test_a_closed_connection_is_opened_again(server: Server) -> None:
    server.answers.append((200, {"Connection": "close"}))
    transport = HttpClientTransport(fallback=Recorded())
    for _ in range(3):
        assert transport.request("POST", server.url, data=b"x", timeout=5).status_code == 200
    assert len(set(server.client_ports)) == 2  # the first closed; the next two shared one


def test_a_refused_connection_is_a_connection_error_and_the_next_try_connects() -> None:
    port = free_port()
    transport = HttpClientTransport(fallback=Recorded())
    result = transport.request("POST", f"http://127.0.0.1:{port}/v1/traces", data=b"x", timeout=2)
    assert result.status_code is None and isinstance(result.error, ConnectionRefusedError)
    assert transport.is_connection_error(result.error)


def test_what_requests_raised_is_classified_by_the_requests_transport() -> None:
    """A requests exception is an OSError too; whether it is a connection error is the
    fallback's to say (here: never), not this transport's."""
    import requests

    transport = HttpClientTransport(fallback=Recorded())
    assert not transport.is_connection_error(requests.ConnectionError("through the proxy"))
    assert transport.is_connection_error(TimeoutError("timed out"))
    assert not transport.is_connection_error(ValueError("not a transport error"))


@pytest.mark.parametrize(
    ("variable", "value", "url"),
    [
        ("HTTP_PROXY", "http://proxy.example:3128", "http://collector.example:4318/v1/traces"),
        ("HTTPS_PROXY", "http://proxy.example:3128", "https://collector.example/v1/traces"),
        ("REQUESTS_CA_BUNDLE", "/etc/ssl/ca.pem", "https://collector.example/v1/traces"),
    ],
)
def test_what_requests_would_add_from_the_environment_goes_through_requests(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str, url: str
) -> None:
    monkeypatch.setenv(variable, value)
    fallback = Recorded()
    transport = HttpClientTransport(fallback=fallback)
    assert transport.request("POST", url, data=b"x", timeout=1).status_code == 200
    assert fallback.urls == [url]


def test_an_endpoint_no_proxy_names_is_posted_directly(
    monkeypatch: pytest.MonkeyPatch, server: Server
) -> None:
    monkeypatch.setenv("HTTP_PROXY", "http://proxy.example:3128")
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")
    fallback = Recorded()
    transport = HttpClientTransport(fallback=fallback)
    assert transport.request("POST", server.url, data=b"x", timeout=5).status_code == 200
    assert fallback.urls == [] and server.bodies == [b"x"]


def test_netrc_credentials_for_the_endpoint_go_through_requests(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, server: Server
) -> None:
    netrc = tmp_path / "netrc"
    netrc.write_text("machine 127.0.0.1 login otlp password secret\n")
    netrc.chmod(0o600)
    monkeypatch.setenv("NETRC", str(netrc))
    fallback = Recorded()
    HttpClientTransport(fallback=fallback).request("POST", server.url, data=b"x", timeout=5)
    assert fallback.urls == [server.url] and server.bodies == []


def test_tls_settings_are_read_as_the_exporter_reads_them() -> None:
    assert tls_settings({}) == (True, None)
    assert tls_settings(
        {
            "OTEL_EXPORTER_OTLP_CERTIFICATE": "/all/ca.pem",
            "OTEL_EXPORTER_OTLP_TRACES_CERTIFICATE": "/traces/ca.pem",
            "OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE": "/all/client.pem",
            "OTEL_EXPORTER_OTLP_CLIENT_KEY": "/all/client.key",
        }
    ) == ("/traces/ca.pem", ("/all/client.pem", "/all/client.key"))
    assert tls_settings({"OTEL_EXPORTER_OTLP_TRACES_CLIENT_CERTIFICATE": "/c.pem"}) == (
        True,
        "/c.pem",
    )


def test_a_credential_provider_leaves_the_transport_to_the_exporter(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    made: list[dict[str, Any]] = []

    class Exporter:
        def __init__(self, endpoint: Any = None, **options: Any) -> None:
            made.append(options)

    monkeypatch.setattr("streams.otlp_transport.OTLPSpanExporter", Exporter)
    monkeypatch.setenv("OTEL_PYTHON_EXPORTER_OTLP_HTTP_CREDENTIAL_PROVIDER", "mine")
    new_span_exporter()
    monkeypatch.delenv("OTEL_PYTHON_EXPORTER_OTLP_HTTP_CREDENTIAL_PROVIDER")
    new_span_exporter()
    assert made[0] == {}
    assert isinstance(made[1]["_transport"], HttpClientTransport)


def test_an_exporter_without_a_transport_argument_is_made_as_before(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A later exporter version may drop its private ``_transport``: then ``requests`` again,
    with the session that reads the environment once."""
    made: list[dict[str, Any]] = []

    class Exporter:
        def __init__(self, endpoint: Any = None, session: Any = None) -> None:
            made.append({"session": session})

    monkeypatch.setattr("streams.otlp_transport.OTLPSpanExporter", Exporter)
    new_span_exporter()
    assert [type(options["session"]).__name__ for options in made] == ["EnvironmentOnce"]
