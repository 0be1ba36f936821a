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
  a host off the list is refused.
- The body is read up to the input limit (MAX_INPUT_BYTES) and no further.

Only the standard library: `http.client` connects to the checked address while TLS still verifies
the certificate against the host name.
"""

from __future__ import annotations

import http.client
import ipaddress
import os
import socket
import ssl
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import urljoin, urlsplit

from handler.core.errors import ConfigurationError, ImageTooLarge, InvalidParameter, SourceForbidden

HOSTS_VARIABLE = "IMAGE_URL_HOSTS"
MAX_REDIRECTS = 3
# Seconds to connect, and the longest silence while reading: a slow host must not eat the API's 28 s.
TIMEOUT = 5.0
_DEFAULT_PORTS = {"http": 80, "https": 443}
_REDIRECTS = {301, 302, 303, 307, 308}
_CHUNK = 64 * 1024

Address = ipaddress.IPv4Address | ipaddress.IPv6Address


_NAT64 = ipaddress.ip_network("64:ff9b::/96")


def is_public(address: Address) -> bool:
    """Whether an address is on the public internet (`is_global`), and not multicast.

    IPv6 forms that carry an IPv4 address (mapped, NAT64, 6to4, Teredo) are judged by that address:
    64:ff9b::a9fe:a9fe reaches 169.254.169.254 through a NAT64 gateway.
    """
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
    """The URL's parts, if it is http(s) to an allow-listed host; refused otherwise."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as error:
        raise InvalidParameter("image_url", "not a valid URL") from error
    if parts.scheme not in _DEFAULT_PORTS or not parts.hostname:
        raise InvalidParameter("image_url", "expected an http or https URL")
    if parts.username or parts.password:
        raise InvalidParameter("image_url", "credentials in the URL are not accepted")
    host = parts.hostname.lower()
    effective = port or _DEFAULT_PORTS[parts.scheme]
    if f"{host}:{effective}" not in hosts and not (host in hosts and effective == _DEFAULT_PORTS[parts.scheme]):
        raise SourceForbidden(f"image_url: host {host!r} is not on this service's {HOSTS_VARIABLE} allow-list")
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    return Target(scheme=parts.scheme, host=host, port=effective, path=path)


def checked_address(host: str, port: int) -> str:
    """One address of `host`, after every address it resolves to passed `address_allowed`."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as error:
        raise InvalidParameter("image_url", f"cannot resolve host {host!r}") from error
    addresses = [ipaddress.ip_address(str(info[4][0]).split("%", 1)[0]) for info in infos]
    if not addresses or not all(address_allowed(address) for address in addresses):
        raise SourceForbidden(f"image_url: host {host!r} resolves to an address that may not be fetched")
    return str(addresses[0])


class _PinnedHTTPConnection(http.client.HTTPConnection):
    def __init__(self, host: str, port: int, address: str) -> None:
        super().__init__(host, port, timeout=TIMEOUT)
        self._address = address

    def connect(self) -> None:
        self.sock = socket.create_connection((self._address, self.port), self.timeout)


class _PinnedHTTPSConnection(http.client.HTTPSConnection):
    def __init__(self, host: str, port: int, address: str) -> None:
        super().__init__(host, port, timeout=TIMEOUT, context=ssl.create_default_context())
        self._address = address

    def connect(self) -> None:
        sock = socket.create_connection((self._address, self.port), self.timeout)
        # The certificate is verified against the host name, though we connected to its address.
        self.sock = self._context.wrap_socket(sock, server_hostname=self.host)  # type: ignore[attr-defined]


def fetch(url: str, max_bytes: int, hosts: frozenset[str] | None = None) -> bytes:
    """The body at `url`, following at most MAX_REDIRECTS redirects within the allow-list."""
    hosts = allowed_hosts() if hosts is None else hosts
    if not hosts:
        raise InvalidParameter("image_url", f"not accepted by this deployment ({HOSTS_VARIABLE} is empty)")
    for _ in range(MAX_REDIRECTS + 1):
        where = target(url, hosts)
        address = checked_address(where.host, where.port)
        connection_class = _PinnedHTTPSConnection if where.scheme == "https" else _PinnedHTTPConnection
        connection = connection_class(where.host, where.port, address)
        try:
            connection.request("GET", where.path, headers={"Accept": "image/*", "User-Agent": "background-remover"})
            response = connection.getresponse()
            if response.status in _REDIRECTS and response.getheader("Location"):
                url = urljoin(url, response.getheader("Location") or "")
                continue
            if response.status != 200:
                raise InvalidParameter("image_url", f"failed to download the image: HTTP status {response.status}")
            return _read_bounded(response, max_bytes)
        except (OSError, http.client.HTTPException) as error:
            raise InvalidParameter("image_url", f"failed to download the image ({type(error).__name__})") from error
        finally:
            connection.close()
    raise InvalidParameter("image_url", f"more than {MAX_REDIRECTS} redirects")


def _read_bounded(response: http.client.HTTPResponse, max_bytes: int) -> bytes:
    declared = response.getheader("Content-Length")
    if declared is not None and declared.isdigit() and int(declared) > max_bytes:
        raise ImageTooLarge(f"the image at image_url is {int(declared):,} bytes; the limit is {max_bytes:,}")
    chunks, total = [], 0
    while chunk := response.read(min(_CHUNK, max_bytes + 1 - total)):
        chunks.append(chunk)
        total += len(chunk)
        if total > max_bytes:
            raise ImageTooLarge(f"the image at image_url is over the limit of {max_bytes:,} bytes")
    return b"".join(chunks)
