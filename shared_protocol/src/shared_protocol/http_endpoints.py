"""Plain-HTTP endpoints served on the WebSocket port (for Docker healthchecks and Prometheus).

websockets calls `process_request` before the opening handshake; returning a Response answers the
request as plain HTTP, returning None lets the WebSocket handshake proceed.
"""

from __future__ import annotations

import http
import json
from collections.abc import Callable
from typing import Any

from websockets.datastructures import Headers
from websockets.http11 import Response

# path -> callable returning (status, content_type, body)
Endpoint = Callable[[], tuple[int, str, bytes]]


def json_endpoint(fn: Callable[[], tuple[int, dict[str, Any]]]) -> Endpoint:
    def endpoint() -> tuple[int, str, bytes]:
        status, body = fn()
        return status, "application/json", json.dumps(body).encode()

    return endpoint


def http_response(status: int, content_type: str, body: bytes) -> Response:
    headers = Headers(
        [
            ("Content-Type", content_type),
            ("Content-Length", str(len(body))),
            ("Connection", "close"),
            ("X-Content-Type-Options", "nosniff"),
        ]
    )
    if content_type.startswith("text/html"):
        # Everything a page of ours needs is served from this origin (no CDN, no inline script).
        headers["Content-Security-Policy"] = (
            "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; "
            "media-src 'self' blob: mediastream:; connect-src 'self' ws: wss:; object-src 'none'; "
            "base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
        )
    return Response(status, http.HTTPStatus(status).phrase, headers, body)
