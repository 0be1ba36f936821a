"""Fetching remove.bg's `image_url` from allow-listed hosts only: never an open fetcher.

A service that downloads any URL it is given can be pointed at what only it can reach: the
instance metadata endpoint (169.254.169.254), VPC-internal hosts, localhost. So:

- Off unless `IMAGE_URL_HOSTS` names hosts (comma-separated, exact names, `host` or `host:port`;
  a bare host allows the scheme's default port only).
- Every address the host resolves to must be public (`address_allowed`): no private, loopback,
  link-local, multicast, reserved or unspecified address, IPv4 or IPv6. The connection then goes to
  the address that was checked, not to a second lookup (a DNS answer that changes in between
  cannot slip a private address in).
- Redirects are followed by hand, a few at most, each target checked the same way: a redirect to
  a host off the list is refused, and so is one from https to http.
- URLs and `Location`s go out as a browser sends them: a Unicode host in its IDNA (punycode) form,
  anything but ASCII in the path and query percent-encoded as UTF-8.
- The body is read up to the input limit (MAX_INPUT_BYTES) and no further, and the whole fetch
  (name resolution, connections, redirects, body) ends by one DEADLINE: a host that sends a byte
  every few seconds never trips a per-read timeout, and the resolver has none of its own.

Only the standard library: `http.client` connects to the checked address while TLS still verifies
the certificate against the host name.
"""

from __future__ import annotations

import contextlib
import http.client
import ipaddress
import os
import socket
import ssl
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urljoin, urlsplit

from handler.core.errors import (
    BackgroundRemovalError,
    ConfigurationError,
    ImageTooLarge,
    InvalidParameter,
    SourceForbidden,
)

HOSTS_VARIABLE = "IMAGE_URL_HOSTS"
MAX_REDIRECTS = 3
# Seconds to connect, and the longest silence while reading: a slow host must not eat the API's 28 s.
TIMEOUT = 5.0
# Seconds for the whole fetch, resolution and redirects included: the rest of the API's 28 s is
# the photo's (decode, inference, encoding).
DEADLINE = 10.0
_DEFAULT_PORTS = {"http": 80, "https": 443}
_REDIRECTS = {301, 302, 303, 307, 308}
_CHUNK = 64 * 1024
# What a browser sends as it is in a path or query (RFC 3986's reserved and unreserved characters,
# and '%' so that escapes stay escapes); anything else goes out percent-encoded as UTF-8.
_URI_SAFE = "!#$%&'()*+,/:;=?@[]~-._"

Address = ipaddress.IPv4Address | ipaddress.IPv6Address


_NAT64 = ipaddress.ip_network("64:ff9b::/96")
# Refused whatever `is_global` says: Python's tables of special ranges differ between releases
# (3.11 and 3.12 disagree on several), and none of these is where a public image host lives.
_REFUSED = tuple(
    ipaddress.ip_network(network)
    for network in (
        "192.0.0.0/24",  # IETF protocol assignments (IANA lists .9 and .10 as global)
        "192.88.99.0/24",  # 6to4 relay anycast, deprecated
        "::/96",  # IPv4-compatible IPv6 (::a.b.c.d), deprecated: reaches a.b.c.d on some stacks
        "::ffff:0:0:0/96",  # SIIT IPv4-translated (::ffff:0:a.b.c.d)
        "64:ff9b:1::/48",  # local-use NAT64 (RFC 8215): any local IPv4 behind a local translator
        "fec0::/10",  # site-local, deprecated
        "3fff::/20",  # documentation (RFC 9637)
        "5f00::/16",  # segment routing (SRv6) SIDs (RFC 9602)
    )
)


def is_public(address: Address) -> bool:
    """Whether an address is on the public internet (`is_global`), and not multicast.

    IPv6 forms that carry an IPv4 address (mapped, NAT64, 6to4, Teredo) are judged by that address:
    64:ff9b::a9fe:a9fe reaches 169.254.169.254 through a NAT64 gateway. The ranges in `_REFUSED`
    are refused outright.
    """
    if any(address in network for network in _REFUSED):
        return False
    if isinstance(address, ipaddress.IPv6Address):
        embedded = address.ipv4_mapped or address.sixtofour or (address.teredo or (None, None))[1]
        if embedded is None and address in _NAT64:
            embedded = ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
        if embedded is not None:
            return is_public(embedded)
    return address.is_global and not address.is_multicast


# Which resolved addresses may be connected to. Tests, which may only use 127.0.0.1, replace it.
address_allowed: Callable[[Address], bool] = is_public


@dataclass(frozen=True)
class Target:
    scheme: str
    host: str
    port: int
    path: str


def allowed_hosts(environ: os._Environ[str] | dict[str, str] | None = None) -> frozenset[str]:
    """The allow-list from the environment, lower-cased; empty means `image_url` is off."""
    raw = (environ if environ is not None else os.environ).get(HOSTS_VARIABLE, "")
    hosts = frozenset(part.strip().lower() for part in raw.split(",") if part.strip())
    for host in hosts:
        if "/" in host or "*" in host or "@" in host:
            raise ConfigurationError(f"{HOSTS_VARIABLE}: {host!r} is not a host name (no schemes, paths or wildcards)")
    return hosts


def target(url: str, hosts: frozenset[str]) -> Target:
    """The URL's parts, if it is http(s) to an allow-listed host; refused otherwise.

    The host comes back in its ASCII (IDNA) form and the path and query percent-encoded, as a
    browser would send them: `http.client` sends ASCII only.
    """
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as error:
        raise InvalidParameter("image_url", "not a valid URL") from error
    if parts.scheme not in _DEFAULT_PORTS or not parts.hostname:
        raise InvalidParameter("image_url", "expected an http or https URL")
    if parts.username or parts.password:
        raise InvalidParameter("image_url", "credentials in the URL are not accepted")
    host = _ascii_host(parts.hostname.lower())
    effective = port or _DEFAULT_PORTS[parts.scheme]
    if f"{host}:{effective}" not in hosts and not (host in hosts and effective == _DEFAULT_PORTS[parts.scheme]):
        raise SourceForbidden(f"image_url: host {host!r} is not on this service's {HOSTS_VARIABLE} allow-list")
    path = _as_uri(parts.path or "/") + (f"?{_as_uri(parts.query)}" if parts.query else "")
    return Target(scheme=parts.scheme, host=host, port=effective, path=path)


def _ascii_host(host: str) -> str:
    """A host name as it goes on the wire: Unicode labels in IDNA (punycode) form."""
    if host.isascii():
        return host
    try:
        return host.encode("idna").decode("ascii")
    except UnicodeError as error:
        raise InvalidParameter("image_url", "the host is not a valid international domain name") from error


def _as_uri(text: str) -> str:
    # surrogateescape: bytes of a Location that were not UTF-8 go out as they came, percent-encoded.
    return quote(text, safe=_URI_SAFE, errors="surrogateescape")


def _location(header: str) -> str:
    """A `Location` header's URL: http.client hands header bytes over as Latin-1, and browsers read
    them as UTF-8."""
    return header.encode("latin-1").decode("utf-8", errors="surrogateescape")


def checked_address(host: str, port: int, seconds: float = TIMEOUT) -> str:
    """One address of `host`, after every address it resolves to passed `address_allowed`.

    The resolver runs on a thread of its own: `getaddrinfo` has no timeout, and a caller waits for
    it `seconds` at most (the thread, if stuck, ends with the resolver's own retries).
    """
    answer: list[list[tuple[Any, ...]] | BaseException] = []
    resolved = threading.Event()

    def resolve() -> None:
        try:
            answer.append(socket.getaddrinfo(host, port, type=socket.SOCK_STREAM))
        except (OSError, UnicodeError) as error:
            answer.append(error)
        finally:
            resolved.set()

    threading.Thread(target=resolve, name="image-url-resolver", daemon=True).start()
    if not resolved.wait(seconds):
        raise _too_slow()
    infos = answer[0]
    if isinstance(infos, BaseException):
        raise InvalidParameter("image_url", f"cannot resolve host {host!r}") from infos
    addresses = [ipaddress.ip_address(str(info[4][0]).split("%", 1)[0]) for info in infos]
    if not addresses or not all(address_allowed(address) for address in addresses):
        raise SourceForbidden(f"image_url: host {host!r} resolves to an address that may not be fetched")
    return str(addresses[0])


def _too_slow() -> InvalidParameter:
    return InvalidParameter("image_url", f"the image could not be downloaded within {DEADLINE:g} s")


class _Deadline:
    """The one deadline of a fetch, and a watchdog that shuts the connection's socket when it passes,
    so that a read blocked on a host that sends a byte now and then returns at once."""

    def __init__(self, seconds: float) -> None:
        self._ends = time.monotonic() + seconds
        self.passed = False
        self._socket: socket.socket | None = None
        self._lock = threading.Lock()

    def remaining(self) -> float:
        left = self._ends - time.monotonic()
        if left <= 0:
            raise _too_slow()
        return left

    def watch(self, sock: socket.socket) -> None:
        with self._lock:
            self._socket = sock
            if self.passed:
                self._shut()

    def expire(self) -> None:
        with self._lock:
            self.passed = True
            self._shut()

    def _shut(self) -> None:
        if self._socket is not None:
            with contextlib.suppress(OSError):
                self._socket.shutdown(socket.SHUT_RDWR)


class _PinnedHTTPConnection(http.client.HTTPConnection):
    def __init__(self, host: str, port: int, address: str, deadline: _Deadline) -> None:
        super().__init__(host, port, timeout=min(TIMEOUT, deadline.remaining()))
        self._address = address
        self._deadline = deadline

    def _connected(self) -> socket.socket:
        sock = socket.create_connection((self._address, self.port), self.timeout)
        self._deadline.watch(sock)
        return sock

    def connect(self) -> None:
        self.sock = self._connected()


class _PinnedHTTPSConnection(_PinnedHTTPConnection):
    def connect(self) -> None:
        # The certificate is verified against the host name, though we connected to its address.
        self.sock = ssl.create_default_context().wrap_socket(self._connected(), server_hostname=self.host)


def fetch(url: str, max_bytes: int, hosts: frozenset[str] | None = None) -> bytes:
    """The body at `url`, following at most MAX_REDIRECTS redirects within the allow-list, all
    within DEADLINE seconds."""
    hosts = allowed_hosts() if hosts is None else hosts
    if not hosts:
        raise InvalidParameter("image_url", f"not accepted by this deployment ({HOSTS_VARIABLE} is empty)")
    deadline = _Deadline(DEADLINE)
    watchdog = threading.Timer(DEADLINE, deadline.expire)
    watchdog.daemon = True
    watchdog.start()
    try:
        return _fetch(url, max_bytes, hosts, deadline)
    except (BackgroundRemovalError, OSError, http.client.HTTPException) as error:
        if deadline.passed:  # whatever the shut socket made of the read, the answer is the deadline
            raise _too_slow() from error
        if isinstance(error, BackgroundRemovalError):
            raise
        raise InvalidParameter("image_url", f"failed to download the image ({type(error).__name__})") from error
    finally:
        watchdog.cancel()


def _fetch(url: str, max_bytes: int, hosts: frozenset[str], deadline: _Deadline) -> bytes:
    previous: Target | None = None
    for _ in range(MAX_REDIRECTS + 1):
        where = target(url, hosts)
        if previous is not None and previous.scheme == "https" and where.scheme == "http":
            raise SourceForbidden("image_url: a redirect from https to http is not followed")
        address = checked_address(where.host, where.port, deadline.remaining())
        connection_class = _PinnedHTTPSConnection if where.scheme == "https" else _PinnedHTTPConnection
        connection = connection_class(where.host, where.port, address, deadline)
        try:
            connection.request("GET", where.path, headers={"Accept": "image/*", "User-Agent": "background-remover"})
            response = connection.getresponse()
            location = response.getheader("Location")
            if response.status in _REDIRECTS and location:
                url, previous = urljoin(url, _location(location)), where
                continue
            if response.status != 200:
                raise InvalidParameter("image_url", f"failed to download the image: HTTP status {response.status}")
            data = _read_bounded(response, max_bytes)
            if deadline.passed:  # the body may have been cut short by the watchdog
                raise _too_slow()
            return data
        finally:
            connection.close()
    raise InvalidParameter("image_url", f"more than {MAX_REDIRECTS} redirects")


def _read_bounded(response: http.client.HTTPResponse, max_bytes: int) -> bytes:
    declared = response.getheader("Content-Length")
    if declared is not None:
        # ASCII digits only: str.isdigit() also takes "²", which int() refuses, and int() takes
        # other scripts' digits; several Content-Lengths arrive joined by commas.
        if not (declared.isascii() and declared.isdigit()):
            raise InvalidParameter("image_url", "the server sent an invalid Content-Length")
        if int(declared) > max_bytes:
            raise ImageTooLarge(f"the image at image_url is {int(declared):,} bytes; the limit is {max_bytes:,}")
    chunks, total = [], 0
    while chunk := response.read1(min(_CHUNK, max_bytes + 1 - total)):
        chunks.append(chunk)
        total += len(chunk)
        if total > max_bytes:
            raise ImageTooLarge(f"the image at image_url is over the limit of {max_bytes:,} bytes")
    return b"".join(chunks)
