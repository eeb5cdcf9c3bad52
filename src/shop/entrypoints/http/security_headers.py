"""Security headers on every response (404s and 405s included), added by the request log's
raw ASGI wrapper (``request_log.py``), the one wrapper every response passes through.

- ``X-Content-Type-Options: nosniff`` and ``Referrer-Policy: no-referrer`` everywhere: a
  JSON error must never be sniffed into a script, and URLs (cursors, ids) stay ours.
- HTML (the docs, dashboards) also gets ``X-Frame-Options: DENY`` and a Content Security
  Policy: no framing (clickjacking), scripts and styles only from here (the docs' Swagger UI
  assets are served by the shop itself, see ``docs.py``).

A header the handler set itself wins: a page that needs another policy declares it on its
response, and this wrapper leaves it alone.
"""

from __future__ import annotations

ALWAYS: tuple[tuple[bytes, bytes], ...] = (
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
)
HTML_POLICY = (
    "default-src 'self'; "
    "script-src 'self' 'unsafe-inline'; "
    "style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data: https:; connect-src 'self'; "
    "frame-ancestors 'none'; base-uri 'none'; form-action 'self'"
)
ON_HTML: tuple[tuple[bytes, bytes], ...] = (
    (b"x-frame-options", b"DENY"),
    (b"content-security-policy", HTML_POLICY.encode()),
)


_OURS = frozenset(name for name, _ in ALWAYS + ON_HTML)


def with_security_headers(headers: list[tuple[bytes, bytes]]) -> list[tuple[bytes, bytes]]:
    """``headers`` completed with the security headers the handler did not set itself
    (extended in place and returned; the caller hands in its own copy). One pass over the
    response's headers: this runs for every response."""
    present: set[bytes] = set()
    html = False
    for name, value in headers:
        lowered = name.lower()
        if lowered in _OURS:
            present.add(lowered)
        elif lowered == b"content-type":
            html = value.startswith(b"text/html")
    headers.extend(
        item for item in (ALWAYS + ON_HTML if html else ALWAYS) if item[0] not in present
    )
    return headers
