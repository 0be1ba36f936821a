"""multipart/form-data bodies as browsers and `curl -F` send them, for the API tests."""

from __future__ import annotations

from collections.abc import Mapping


def multipart_body(fields: Mapping[str, str | bytes], boundary: str) -> bytes:
    """Text fields as plain parts; bytes as a JPEG file upload named after its field."""
    parts = []
    for name, value in fields.items():
        if isinstance(value, bytes):
            head = f'Content-Disposition: form-data; name="{name}"; filename="{name}.jpg"\r\nContent-Type: image/jpeg'
            payload = value
        else:
            head, payload = f'Content-Disposition: form-data; name="{name}"', value.encode()
        parts.append(f"--{boundary}\r\n{head}\r\n\r\n".encode() + payload + b"\r\n")
    return b"".join(parts) + f"--{boundary}--\r\n".encode()
