"""A plain HTTP client for the local server, as a browser or curl would call it."""

from __future__ import annotations

import urllib.error
import urllib.request


def post(url: str, body: bytes, content_type: str = "image/jpeg") -> tuple[int, dict[str, str], bytes]:
    request = urllib.request.Request(url, data=body, method="POST", headers={"Content-Type": content_type})
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as error:
        return error.code, dict(error.headers), error.read()
