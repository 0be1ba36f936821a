"""image_url against real HTTP(S) servers on 127.0.0.1: one deadline for the whole fetch (the
resolver included), URLs sent as a browser sends them, no https-to-http redirect, and a server's
bad Content-Length refused. Each server records what it was sent; nothing is timed."""

from __future__ import annotations

import datetime
import ipaddress
import json
import socket
import ssl
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from handler.aws import image_url
from handler.core.errors import InvalidParameter, SourceForbidden
from tests.helpers.api import EVENT_IMAGE, Service, http_event

pytestmark = pytest.mark.filterwarnings("ignore:No application metrics to publish")

MAX_BYTES = 1 << 20
# Long enough for a local fetch, short enough that the tests that wait for it stay quick.
SHORT_DEADLINE = 1.0
# How long the dripping server keeps going on its own: far past the deadline (it stops once the
# client hangs up), and over on main after a few seconds, where there was no deadline.
DRIP_BYTES, DRIP_SECONDS = 120, 0.05


class _Host(BaseHTTPRequestHandler):
    """Routes for the tests; every request line is recorded in `self.server.seen`."""

    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:
        self.server.seen.append(self.path)  # type: ignore[attr-defined]
        https_port = getattr(self.server, "https_port", 0)
        plain_port = getattr(self.server, "plain_port", 0)
        if self.path in ("/caf%C3%A9%20au%20lait.jpg", "/%C3%BC.jpg", "/cat.jpg"):
            self._send(200, {"Content-Type": "image/jpeg"}, EVENT_IMAGE)
        elif self.path == "/unicode-location":
            # The raw UTF-8 bytes of "/ü.jpg", as servers send them (send_header writes Latin-1)
            self._send(302, {"Location": "/ü.jpg".encode().decode("latin-1")}, b"")
        elif self.path == "/superscript-length":
            self._send(200, {"Content-Length": "²"}, b"ab", length=False)
        elif self.path == "/two-lengths":
            self._send(200, {"Content-Length": "2, 2"}, b"ab", length=False)
        elif self.path == "/to-plain-http":
            self._send(302, {"Location": f"http://127.0.0.1:{plain_port}/cat.jpg"}, b"")
        elif self.path == "/to-https":
            self._send(302, {"Location": f"https://localhost:{https_port}/cat.jpg"}, b"")
        elif self.path == "/drip-body":
            self._drip(headers_first=True)
        elif self.path == "/drip-headers":
            self._drip(headers_first=False)
        else:
            self._send(404, {}, b"")

    def _send(self, status: int, headers: dict[str, str], body: bytes, *, length: bool = True) -> None:
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        if length:
            self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _drip(self, *, headers_first: bool) -> None:
        """One byte every DRIP_SECONDS, until the client hangs up or DRIP_BYTES are out."""
        stopped = threading.Event()
        if headers_first:
            self.wfile.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % DRIP_BYTES)
            drip = b"x" * DRIP_BYTES
        else:
            self.wfile.write(b"HTTP/1.1 200 OK\r\n")
            drip = b"X-Slow: " + b"y" * (DRIP_BYTES - 12) + b"\r\n\r\n"
        sent = 0
        try:
            for byte in drip:
                self.wfile.write(bytes((byte,)))
                self.wfile.flush()
                sent += 1
                stopped.wait(DRIP_SECONDS)
        except OSError:
            pass
        self.server.dripped.append(sent)  # type: ignore[attr-defined]

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        pass


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, context: ssl.SSLContext | None = None) -> None:
        super().__init__(("127.0.0.1", 0), _Host)
        self.seen: list[str] = []
        self.dripped: list[int] = []
        if context is not None:
            self.socket = context.wrap_socket(self.socket, server_side=True)
        self.thread = threading.Thread(target=self.serve_forever, daemon=True)
        self.thread.start()

    @property
    def port(self) -> int:
        return int(self.server_address[1])

    def stop(self) -> None:
        self.shutdown()
        self.server_close()

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # a client hanging up on a dripping or redirecting host is what some tests do


def _certificate(directory: Path) -> tuple[Path, Path]:
    """A self-signed certificate for localhost, made here (the client trusts it alone)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost")]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "cert.pem", directory / "key.pem"
    cert_path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return cert_path, key_path


@pytest.fixture(scope="module")
def servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[_Server, _Server, Path]]:
    """A plain HTTP server and an HTTPS one for `localhost`, each knowing the other's port."""
    cert, key = _certificate(tmp_path_factory.mktemp("tls"))
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    plain, secure = _Server(), _Server(context)
    for server in (plain, secure):
        server.plain_port, server.https_port = plain.port, secure.port  # type: ignore[attr-defined]
    yield plain, secure, cert
    plain.stop()
    secure.stop()


@pytest.fixture
def local(monkeypatch: pytest.MonkeyPatch, servers: tuple[_Server, _Server, Path]) -> Callable[[str], bytes]:
    """`fetch` with loopback allowed, localhost resolving to 127.0.0.1 and the test certificate trusted."""
    plain, secure, cert = servers
    plain.seen.clear()
    plain.dripped.clear()
    monkeypatch.setattr(image_url, "address_allowed", lambda address: address.is_loopback)
    monkeypatch.setattr(image_url, "DEADLINE", SHORT_DEADLINE, raising=False)  # (main had none)
    real_context = ssl.create_default_context
    monkeypatch.setattr(image_url.ssl, "create_default_context", lambda: real_context(cafile=str(cert)))
    hosts = frozenset({f"127.0.0.1:{plain.port}", f"localhost:{secure.port}"})
    return lambda url: image_url.fetch(url, MAX_BYTES, hosts)


def test_a_non_ascii_path_is_sent_percent_encoded_as_utf8(
    local: Callable[[str], bytes], servers: tuple[_Server, _Server, Path]
) -> None:
    plain = servers[0]

    data = local(f"http://127.0.0.1:{plain.port}/café au lait.jpg")

    assert data == EVENT_IMAGE
    assert plain.seen == ["/caf%C3%A9%20au%20lait.jpg"]


def test_a_non_ascii_location_is_followed_as_a_browser_follows_it(
    local: Callable[[str], bytes], servers: tuple[_Server, _Server, Path]
) -> None:
    plain = servers[0]

    assert local(f"http://127.0.0.1:{plain.port}/unicode-location") == EVENT_IMAGE
    assert plain.seen == ["/unicode-location", "/%C3%BC.jpg"]


@pytest.mark.parametrize("path", ["/superscript-length", "/two-lengths"])
def test_a_content_length_that_is_no_number_is_refused(
    local: Callable[[str], bytes], servers: tuple[_Server, _Server, Path], path: str
) -> None:
    with pytest.raises(InvalidParameter, match="Content-Length"):
        local(f"http://127.0.0.1:{servers[0].port}{path}")


def test_https_is_fetched_with_the_certificate_verified(
    local: Callable[[str], bytes], servers: tuple[_Server, _Server, Path]
) -> None:
    secure = servers[1]

    assert local(f"https://localhost:{secure.port}/cat.jpg") == EVENT_IMAGE


def test_a_redirect_from_https_to_http_is_refused_even_within_the_allow_list(
    local: Callable[[str], bytes], servers: tuple[_Server, _Server, Path]
) -> None:
    plain, secure, _ = servers

    with pytest.raises(SourceForbidden, match="https to http"):
        local(f"https://localhost:{secure.port}/to-plain-http")
    assert plain.seen == []  # the plain host was never asked
    # the other way round is an upgrade, and followed
    assert local(f"http://127.0.0.1:{plain.port}/to-https") == EVENT_IMAGE


@pytest.mark.parametrize("path", ["/drip-body", "/drip-headers"])
def test_a_host_that_drips_bytes_is_cut_off_at_the_deadline(
    local: Callable[[str], bytes], servers: tuple[_Server, _Server, Path], path: str
) -> None:
    # GIVEN a host that sends one byte every 50 ms: no single read ever waits the 5 s timeout
    plain = servers[0]

    # WHEN an image is fetched from it, THEN the fetch ends at its deadline
    with pytest.raises(InvalidParameter, match=f"within {SHORT_DEADLINE:g} s"):
        local(f"http://127.0.0.1:{plain.port}{path}")

    # and the host saw the connection end before it had sent all it meant to
    _wait_for(lambda: len(plain.dripped) == 1)
    assert plain.dripped[0] < DRIP_BYTES


def test_a_resolver_that_never_answers_is_cut_off_at_the_deadline(
    local: Callable[[str], bytes], monkeypatch: pytest.MonkeyPatch, servers: tuple[_Server, _Server, Path]
) -> None:
    # GIVEN a resolver that hangs (released when the test ends; on its own after 30 s)
    release = threading.Event()
    asked: list[str] = []

    def hanging_getaddrinfo(host: str, *args: Any, **kwargs: Any) -> Any:
        asked.append(host)
        release.wait(30)
        raise socket.gaierror("no answer")

    monkeypatch.setattr(image_url.socket, "getaddrinfo", hanging_getaddrinfo)
    try:
        with pytest.raises(InvalidParameter, match=f"within {SHORT_DEADLINE:g} s"):
            local(f"https://localhost:{servers[1].port}/cat.jpg")
        assert asked == ["localhost"]
    finally:
        release.set()


def _wait_for(condition: Callable[[], bool]) -> None:
    """Wait until the server thread has recorded the end of its connection (an event, not a time)."""
    done = threading.Event()
    for _ in range(200):
        if condition():
            return
        done.wait(0.05)
    raise AssertionError("the server never recorded the end of the connection")


@pytest.mark.parametrize(
    "address",
    [
        "::a9fe:a9fe",  # IPv4-compatible ::169.254.169.254
        "::7f00:1",  # ... ::127.0.0.1
        "::808:808",  # ... even of a public address: the form is deprecated
        "64:ff9b:1::a9fe:a9fe",  # local-use NAT64
        "64:ff9b:1:ffff::808:808",
        "::ffff:0:a9fe:a9fe",  # SIIT ::ffff:0:169.254.169.254
        "192.0.0.9",  # 192.0.0.0/24, parts of which Python calls global
        "192.0.0.10",
        "192.0.0.1",
        "192.88.99.1",  # 6to4 relay anycast
        "fec0::1",  # site-local
        "3fff::1",  # documentation
        "5f00::1",  # SRv6
    ],
)
def test_address_ranges_that_reach_internal_hosts_are_refused(address: str) -> None:
    assert not image_url.is_public(ipaddress.ip_address(address))


# --------------------------------------------------------------------------------------------
# Through the remove.bg route: what a client sees
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "status", "mentions"),
    [("/café au lait.jpg", 200, None), ("/superscript-length", 400, "Content-Length")],
    ids=["non-ascii-path", "bad-content-length"],
)
def test_the_route_answers_what_was_a_500(
    configure: Callable[..., Service],
    servers: tuple[_Server, _Server, Path],
    monkeypatch: pytest.MonkeyPatch,
    path: str,
    status: int,
    mentions: str | None,
) -> None:
    plain = servers[0]
    monkeypatch.setattr(image_url, "address_allowed", lambda address: address.is_loopback)
    service = configure(IMAGE_URL_HOSTS=f"127.0.0.1:{plain.port}")
    document = {"image_url": f"http://127.0.0.1:{plain.port}{path}", "size": "full"}

    reply = service.invoke(http_event(json.dumps(document), content_type="application/json", path="/v1.0/removebg"))

    assert reply.status == status, reply.body[:300]
    assert mentions is None or mentions in reply.body.decode()
