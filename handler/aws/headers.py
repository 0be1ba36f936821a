"""Headers every HTTP answer carries, from the Lambda (handler.api) and from the local server.

- `X-Content-Type-Options: nosniff`: a browser must take `Content-Type` as given, never guess
  HTML or script out of an uploaded image or an error body.
- `Cache-Control: no-store` on everything, results included. Each answer is the result of a POST
  carrying someone's private photo: no browser, proxy or CDN has a reason to keep a copy (a
  client that wants the result again keeps it itself), errors describe one request only, and a
  303's presigned link expires (PRESIGNED_URL_EXPIRY), so a cached redirect would outlive it.
"""

from __future__ import annotations

SECURITY_HEADERS: dict[str, str] = {"X-Content-Type-Options": "nosniff", "Cache-Control": "no-store"}
