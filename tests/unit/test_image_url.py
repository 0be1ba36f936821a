"""image_url's refusals, on addresses and URLs alone (tests can reach nothing but 127.0.0.1)."""

from __future__ import annotations

import ipaddress

import pytest

from handler.aws.image_url import allowed_hosts, is_public, target
from handler.core.errors import ConfigurationError, InvalidParameter, SourceForbidden


@pytest.mark.parametrize(
    "address",
    [
        "127.0.0.1",
        "127.8.9.10",
        "10.0.0.1",
        "172.16.5.4",
        "192.168.1.1",  # loopback, private
        "169.254.169.254",  # link-local: the instance metadata endpoint
        "100.64.0.1",  # carrier-grade NAT
        "0.0.0.0",
        "255.255.255.255",
        "224.0.0.1",
        "240.0.0.1",  # unspecified, broadcast, multicast, reserved
        "::1",
        "::",
        "fe80::1",
        "fc00::1",
        "fd12:3456::1",
        "ff02::1",  # IPv6 loopback, link-local, ULA, multicast
        "::ffff:127.0.0.1",
        "::ffff:169.254.169.254",
        "::ffff:10.0.0.1",  # IPv4-mapped
        "64:ff9b::a9fe:a9fe",
        "2002:a9fe:a9fe::1",  # NAT64 and 6to4 of 169.254.169.254
    ],
)
def test_non_public_addresses_are_refused(address: str) -> None:
    assert not is_public(ipaddress.ip_address(address))


@pytest.mark.parametrize("address", ["8.8.8.8", "1.1.1.1", "2606:4700:4700::1111", "::ffff:8.8.8.8"])
def test_public_addresses_are_allowed(address: str) -> None:
    assert is_public(ipaddress.ip_address(address))


HOSTS = frozenset({"images.example.com", "cdn.example.com:8443"})


@pytest.mark.parametrize(
    ("url", "host", "port"),
    [
        ("https://images.example.com/a.jpg", "images.example.com", 443),
        ("http://IMAGES.example.com/a.jpg?x=1", "images.example.com", 80),
        ("https://cdn.example.com:8443/a.jpg", "cdn.example.com", 8443),
    ],
)
def test_allowed_urls(url: str, host: str, port: int) -> None:
    where = target(url, HOSTS)

    assert (where.host, where.port) == (host, port)


@pytest.mark.parametrize(
    ("url", "error"),
    [
        ("https://evil.example.com/a.jpg", SourceForbidden),
        ("https://images.example.com.evil.com/a.jpg", SourceForbidden),
        ("https://images.example.com:8080/a.jpg", SourceForbidden),  # a bare host: its default port only
        ("https://cdn.example.com/a.jpg", SourceForbidden),  # host:port: that port only
        ("https://169.254.169.254/latest/meta-data/", SourceForbidden),
        ("ftp://images.example.com/a.jpg", InvalidParameter),
        ("file:///etc/passwd", InvalidParameter),
        ("https://user:secret@images.example.com/a.jpg", InvalidParameter),
        ("https://images.example.com:99999/a.jpg", InvalidParameter),
        ("not a url", InvalidParameter),
    ],
)
def test_refused_urls(url: str, error: type[Exception]) -> None:
    with pytest.raises(error):
        target(url, HOSTS)


def test_the_allow_list_is_read_from_the_environment() -> None:
    assert allowed_hosts({"IMAGE_URL_HOSTS": " Images.Example.com ,cdn.example.com:8443,"}) == HOSTS
    assert allowed_hosts({}) == frozenset()
    for bad in ("https://images.example.com", "*.example.com", "images.example.com/path"):
        with pytest.raises(ConfigurationError):
            allowed_hosts({"IMAGE_URL_HOSTS": bad})
