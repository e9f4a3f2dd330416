"""The OTLP/HTTP exporter's transport for the worker's spans: the standard library's
``http.client`` on one kept-alive connection, where ``requests`` would add nothing.

Why: in a 60,000-user flood the span-export thread spent 4.4 µs of CPU a span in the exporter's
default transport (``requests``), 2.3 µs through ``http.client`` (and 3.1 µs encoding it):
with ``requests`` the POSTs alone were about 1.5 % of the worker's CPU. Quiet, one POST of 512
spans costs about 0.6 ms through ``requests``, 0.25 ms through ``urllib3`` and 0.13 ms here.
``requests`` spends it preparing each request (cookies, hooks, netrc, header merging).

Only the transport is replaced: the exporter still does what surrounds it (retries with backoff
and ``Retry-After``, compression, the ``OTEL_EXPORTER_OTLP_*`` headers and timeout), and it is
handed this transport through its ``_transport`` argument (private, like the route for encoded
bytes in ``streams.span_export``: without it, the exporter is made as before).

What ``requests`` reads from the environment is kept where it applies: an endpoint that a proxy
variable (``HTTP_PROXY``, ``HTTPS_PROXY``, ``ALL_PROXY``, less ``NO_PROXY``) or a ``.netrc``
entry covers, or an https endpoint while ``REQUESTS_CA_BUNDLE``/``CURL_CA_BUNDLE`` names a CA
bundle, goes through ``requests`` as before (decided once per URL). A credential provider's
session (``OTEL_PYTHON_EXPORTER_OTLP_HTTP_CREDENTIAL_PROVIDER``) is left to the exporter.
"""

from __future__ import annotations

import http.client
import os
import ssl
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import requests
import requests.utils
from opentelemetry.exporter.http.transport._base import BaseHTTPResult, BaseHTTPTransport
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.environment_variables import (
    OTEL_EXPORTER_OTLP_CERTIFICATE,
    OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE,
    OTEL_EXPORTER_OTLP_CLIENT_KEY,
    OTEL_EXPORTER_OTLP_TRACES_CERTIFICATE,
    OTEL_EXPORTER_OTLP_TRACES_CLIENT_CERTIFICATE,
    OTEL_EXPORTER_OTLP_TRACES_CLIENT_KEY,
)
from requests.structures import CaseInsensitiveDict

# The CA bundles ``requests`` reads from the environment for an https URL.
_CA_BUNDLE_VARIABLES = ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE")

Verify = bool | str  # verify the server (against the system's CAs, or this CA file) or not
Cert = str | tuple[str, str] | None  # the client's certificate (and key) for mutual TLS


@dataclass(frozen=True, slots=True)
class HttpClientResult(BaseHTTPResult):
    """One response (or the error that took its place)."""

    body: bytes = b""
    header_map: Mapping[str, str] = field(default_factory=dict)

    def content(self) -> bytes:
        return self.body

    def headers(self) -> Mapping[str, str]:
        return self.header_map


def _headers(pairs: list[tuple[str, str]]) -> CaseInsensitiveDict[str]:
    """A response's headers as the transport interface asks: by any case of their names, a
    repeated one's values joined by commas."""
    headers: CaseInsensitiveDict[str] = CaseInsensitiveDict()
    for name, value in pairs:
        headers[name] = f"{headers[name]}, {value}" if name in headers else value
    return headers


@dataclass(frozen=True, slots=True)
class _Target:
    scheme: str
    host: str
    port: int | None
    path: str  # with its query, as sent on the request line


class HttpClientTransport(BaseHTTPTransport):
    """POSTs over one kept-alive ``http.client`` connection per host, or through ``fallback``
    (``requests``) for a URL the environment gives ``requests`` something to do for.

    Called from the export thread only (one export at a time), so the connections need no lock.
    Any ``OSError`` (refused, reset, timed out, TLS) or malformed response is a connection error,
    as ``requests``' transport counts its own: the exporter retries it.
    """

    def __init__(
        self,
        *,
        verify: Verify = True,
        cert: Cert = None,
        fallback: BaseHTTPTransport,
    ) -> None:
        self._verify = verify
        self._cert = cert
        self._fallback = fallback
        self._targets: dict[str, _Target | None] = {}  # None: through ``fallback``
        self._connections: dict[tuple[str, str, int | None], http.client.HTTPConnection] = {}
        self._tls: ssl.SSLContext | None = None

    def request(
        self,
        method: str,
        url: str,
        *,
        headers: dict[str, str] | None = None,
        timeout: float | None = None,
        data: bytes | None = None,
    ) -> BaseHTTPResult:
        if url not in self._targets:
            self._targets[url] = self._target(url)
        target = self._targets[url]
        if target is None:
            return self._fallback.request(method, url, headers=headers, timeout=timeout, data=data)
        key = (target.scheme, target.host, target.port)
        connection = self._connections.get(key)
        if connection is None:
            connection = self._connections[key] = self._connect(target, timeout)
        connection.timeout = timeout
        if connection.sock is not None:
            connection.sock.settimeout(timeout)
        try:
            connection.request(method, target.path, body=data, headers=headers or {})
            response = connection.getresponse()
            body = response.read()
        except Exception as error:  # noqa: BLE001 - a result, as every transport answers
            connection.close()  # the next request connects afresh
            return HttpClientResult(error=error)
        if response.will_close:
            connection.close()
        return HttpClientResult(
            status_code=response.status,
            reason=response.reason,
            body=body,
            header_map=_headers(response.getheaders()),
        )

    def is_connection_error(self, exception: Exception | None) -> bool:
        if isinstance(exception, requests.RequestException):  # an OSError too: theirs to say
            return self._fallback.is_connection_error(exception)
        return isinstance(exception, OSError | http.client.HTTPException)

    def close(self) -> None:
        for connection in self._connections.values():
            connection.close()
        self._connections.clear()
        self._fallback.close()

    def _target(self, url: str) -> _Target | None:
        """Where ``url`` is POSTed, or None when ``requests`` would bring something of the
        environment's to it (a proxy, netrc credentials, a CA bundle: read where and as
        ``requests`` reads them), or for a URL that is not plain http or https."""
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            return None
        if requests.utils.get_environ_proxies(url, no_proxy=None):
            return None
        if requests.utils.get_netrc_auth(url):
            return None
        if parts.scheme == "https" and self._verify is True:
            if any(os.environ.get(name) for name in _CA_BUNDLE_VARIABLES):
                return None
        path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        return _Target(parts.scheme, parts.hostname, parts.port, path)

    def _connect(self, target: _Target, timeout: float | None) -> http.client.HTTPConnection:
        if target.scheme == "http":
            return http.client.HTTPConnection(target.host, target.port, timeout=timeout)
        return http.client.HTTPSConnection(
            target.host, target.port, timeout=timeout, context=self._tls_context()
        )

    def _tls_context(self) -> ssl.SSLContext:
        if self._tls is None:
            cafile = self._verify if isinstance(self._verify, str) else None
            context = ssl.create_default_context(cafile=cafile)
            if self._verify is False:
                context.check_hostname = False
                context.verify_mode = ssl.CERT_NONE
            if isinstance(self._cert, tuple):
                context.load_cert_chain(self._cert[0], self._cert[1])
            elif self._cert:
                context.load_cert_chain(self._cert)
            self._tls = context
        return self._tls


# What the OTLP exporter reads to take its HTTP session from a plug-in instead (a credential
# provider, opentelemetry-sdk's names): such a session is left to the exporter.
CREDENTIAL_PROVIDER_VARIABLES = (
    "OTEL_PYTHON_EXPORTER_OTLP_HTTP_CREDENTIAL_PROVIDER",
    "OTEL_PYTHON_EXPORTER_OTLP_HTTP_TRACES_CREDENTIAL_PROVIDER",
)


class EnvironmentOnce(requests.Session):
    """An HTTP session that reads its environment settings (proxies, ``NO_PROXY``, a CA
    bundle) once per URL, for the OTLP exporter.

    Why: ``requests`` reads them from the environment on every request, about a third of an
    export's 0.6-0.7 ms of CPU here (an export carries up to 512 spans). A worker's environment
    does not change while it runs, so the settings are the same, read once.
    """

    def __init__(self) -> None:
        super().__init__()
        self._merged: dict[Any, dict[str, Any]] = {}

    def merge_environment_settings(
        self, url: Any, proxies: Any, stream: Any, verify: Any, cert: Any
    ) -> dict[str, Any]:
        key = (url, stream, verify, cert, frozenset((proxies or {}).items()))
        merged = self._merged.get(key)
        if merged is None:
            given = dict(proxies) if proxies is not None else None
            merged = super().merge_environment_settings(url, given, stream, verify, cert)
            self._merged[key] = merged
        # The caller may change what it is given: each call gets its own proxies.
        return {**merged, "proxies": dict(merged["proxies"] or {})}


def environment_once_session(env: Mapping[str, str] = os.environ) -> EnvironmentOnce | None:
    """The exporter's session: None when a credential provider supplies it instead."""
    if any(env.get(name) for name in CREDENTIAL_PROVIDER_VARIABLES):
        return None
    return EnvironmentOnce()


def tls_settings(env: Mapping[str, str] = os.environ) -> tuple[Verify, Cert]:
    """The server verification and client certificate the exporter would use, from the same
    variables in the same order (traces' own first, then the OTLP-wide ones)."""
    verify: Verify = (
        env.get(OTEL_EXPORTER_OTLP_TRACES_CERTIFICATE)
        or env.get(OTEL_EXPORTER_OTLP_CERTIFICATE)
        or True
    )
    key = env.get(OTEL_EXPORTER_OTLP_TRACES_CLIENT_KEY) or env.get(OTEL_EXPORTER_OTLP_CLIENT_KEY)
    certificate = env.get(OTEL_EXPORTER_OTLP_TRACES_CLIENT_CERTIFICATE) or env.get(
        OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE
    )
    cert: Cert = (certificate, key) if certificate and key else certificate
    return verify, cert


def new_span_exporter(endpoint: str | None = None) -> OTLPSpanExporter:
    """The OTLP/HTTP span exporter, configured by the ``OTEL_*`` variables as it configures
    itself (``endpoint``: the traces URL instead of theirs), on ``HttpClientTransport`` with
    ``requests`` (an ``EnvironmentOnce`` session) behind it; as the SDK makes it when a
    credential provider supplies the session."""
    session = environment_once_session()
    if session is None:
        return OTLPSpanExporter(endpoint=endpoint)
    try:
        from opentelemetry.exporter.http.transport._requests import RequestsHTTPTransport
    except ImportError:
        return OTLPSpanExporter(endpoint=endpoint, session=session)
    verify, cert = tls_settings()
    fallback = RequestsHTTPTransport(verify=verify, cert=cert, session=session)
    transport = HttpClientTransport(verify=verify, cert=cert, fallback=fallback)
    try:
        return OTLPSpanExporter(endpoint=endpoint, _transport=transport)
    except TypeError:  # no ``_transport`` in this version
        return OTLPSpanExporter(endpoint=endpoint, session=session)


__all__ = [
    "CREDENTIAL_PROVIDER_VARIABLES",
    "EnvironmentOnce",
    "HttpClientResult",
    "HttpClientTransport",
    "environment_once_session",
    "new_span_exporter",
    "tls_settings",
]
