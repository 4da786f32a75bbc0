"""The browser dashboard: static files under static/, served on the gateway's own port.

`dashboard_endpoints()` maps "/" to index.html and "/static/<path>" to every other file; the
gateway hands the map to `make_process_request`, so a plain GET is answered as HTTP while a
WebSocket upgrade on "/" still reaches the protocol. Files are read once, on first use: the page
is part of the image, it does not change while the process runs.
"""

from __future__ import annotations

import functools
from pathlib import Path

from shared_protocol.http_endpoints import Endpoint

STATIC_DIR = Path(__file__).resolve().parent / "static"

# Only these kinds are served; any other file under static/ is a packaging mistake (tested).
CONTENT_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
    ".png": "image/png",
    ".txt": "text/plain; charset=utf-8",
}


def _static_endpoint(content_type: str, body: bytes) -> Endpoint:
    def endpoint() -> tuple[int, str, bytes]:
        return 200, content_type, body

    return endpoint


@functools.cache
def dashboard_endpoints() -> dict[str, Endpoint]:
    endpoints: dict[str, Endpoint] = {}
    for path in sorted(STATIC_DIR.rglob("*")):
        content_type = CONTENT_TYPES.get(path.suffix.lower())
        if not path.is_file() or content_type is None:
            continue
        url = "/static/" + path.relative_to(STATIC_DIR).as_posix()
        endpoints[url] = _static_endpoint(content_type, path.read_bytes())
    index = endpoints.get("/static/index.html")
    if index is None:
        raise FileNotFoundError(f"dashboard page missing: {STATIC_DIR / 'index.html'}")
    endpoints["/"] = index
    return endpoints
