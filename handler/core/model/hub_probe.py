"""Whether the model hub can be reached at all, found out in seconds rather than after the hub client's retries.

On a machine that reaches no hub (CI, a sandbox that reaches only package registries), the hub
client retries its connection for ~24 s before it gives up. Every place that would download first
asks this probe — one TCP connection, 3 s at most — and goes to the cache or the fallback at once.
"""

from __future__ import annotations

import socket
import urllib.request
from urllib.parse import urlsplit

DEFAULT_HUB_ENDPOINT = "https://huggingface.co"
# Long enough for a slow but working connection; far below the hub client's ~24 s of retries.
PROBE_TIMEOUT_S = 3.0


def hub_reachable(endpoint: str | None = None, timeout: float = PROBE_TIMEOUT_S) -> bool:
    """Whether a TCP connection to the hub (or to the proxy the hub client would use) opens."""
    url = endpoint or DEFAULT_HUB_ENDPOINT
    parts = urlsplit(url)
    host = parts.hostname or ""
    port = parts.port or (443 if parts.scheme == "https" else 80)
    # Behind a proxy only the proxy is reached directly, as the hub client's HTTP library does it.
    proxy = urllib.request.getproxies().get(parts.scheme or "https")
    if proxy and not urllib.request.proxy_bypass(host):
        proxy_parts = urlsplit(proxy if "://" in proxy else f"http://{proxy}")
        host, port = proxy_parts.hostname or "", proxy_parts.port or 80
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False
