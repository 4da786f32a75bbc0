"""The dashboard's static files: every file served with its type, every reference resolvable,
nothing fetched from outside the server, and the page reachable on the gateway's port."""

from __future__ import annotations

import asyncio
import re
import urllib.error
import urllib.request

import pytest

from support.net import connect_ws, rpc, serving
from vigil_main_backend.config import Config
from vigil_main_backend.dashboard import CONTENT_TYPES, STATIC_DIR, dashboard_endpoints
from vigil_main_backend.gateway import MainBackend

IMPORT = re.compile(r"""^\s*import\s[^'"]*from\s+["'](\.\/[^"']+)["']""", re.MULTILINE)
HTML_REF = re.compile(r"""(?:src|href)="([^"]+)\"""")


def test_every_static_file_is_served_with_its_content_type():
    endpoints = dashboard_endpoints()
    files = [p for p in STATIC_DIR.rglob("*") if p.is_file()]
    assert files
    for path in files:
        assert path.suffix in CONTENT_TYPES, (
            f"{path.name}: no content type for {path.suffix}; add it or remove the file"
        )
        url = "/static/" + path.relative_to(STATIC_DIR).as_posix()
        status, content_type, body = endpoints[url]()
        assert status == 200 and content_type == CONTENT_TYPES[path.suffix] and body == path.read_bytes()
    status, content_type, body = endpoints["/"]()
    assert status == 200 and content_type.startswith("text/html") and b"<title>vigil" in body
    assert endpoints["/static/app.js"]()[1] == "text/javascript; charset=utf-8"  # module scripts need a JS type


def test_references_resolve_and_nothing_comes_from_elsewhere():
    endpoints = dashboard_endpoints()
    html = (STATIC_DIR / "index.html").read_text()
    refs = [ref for ref in HTML_REF.findall(html) if not ref.startswith("data:")]
    assert "/static/app.js" in refs and "/static/style.css" in refs
    for ref in refs:
        assert ref in endpoints, ref
    for script in STATIC_DIR.glob("*.js"):
        text = script.read_text()
        for module in IMPORT.findall(text):
            assert "/static/" + module[2:] in endpoints, f"{script.name} imports missing {module}"
    for path in STATIC_DIR.rglob("*"):
        if path.suffix in (".html", ".js", ".css"):
            text = path.read_text()
            assert not re.search(r"https?://", text), f"{path.name} references an outside URL (no CDN)"
    assert "Content-Security-Policy" in html and "script-src 'self'" in html


def fetch(url: str) -> tuple[int, str, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status, response.headers["Content-Type"], response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.headers.get("Content-Type", ""), exc.read()


def gateway_without_backends() -> MainBackend:
    return MainBackend(Config.model_validate({"main_backend": {"host": "127.0.0.1", "port": 0}, "model_backends": {}}))


@pytest.mark.parametrize("path", ["/", "/static/app.js", "/static/style.css"])
def test_the_gateway_serves_the_page(path):
    async def scenario():
        async with serving(gateway_without_backends()) as url:
            base = url.replace("ws://", "http://")
            status, content_type, body = await asyncio.to_thread(fetch, base + path)
            assert status == 200 and body == dashboard_endpoints()[path]()[2]
            assert content_type == dashboard_endpoints()[path]()[1]

    asyncio.run(asyncio.wait_for(scenario(), timeout=30))


def test_plain_get_gets_the_page_and_a_websocket_upgrade_on_slash_reaches_the_protocol():
    async def scenario():
        async with serving(gateway_without_backends()) as url:
            base = url.replace("ws://", "http://")
            status, content_type, body = await asyncio.to_thread(fetch, base + "/?token=abc")
            assert status == 200 and content_type.startswith("text/html") and b"<title>vigil" in body
            status, _, _ = await asyncio.to_thread(fetch, base + "/static/nope.js")
            assert status != 200
            async with await connect_ws(url + "/") as ws:  # the page's own WebSocket URL
                pong = await rpc(ws, {"type": "health_check", "request_id": "h"})
                assert pong["type"] == "pong"

    asyncio.run(asyncio.wait_for(scenario(), timeout=30))
