"""VigilClient against a real MainBackend in front of the controlled test backends."""

from __future__ import annotations

import asyncio
import base64
import http

import pytest
from websockets.asyncio.server import serve
from websockets.datastructures import Headers
from websockets.http11 import Response

from support.net import free_port, serving
from vigil_client import (
    AnalyzeResult,
    BadRequest,
    Internal,
    Timeout,
    Unauthorized,
    Unavailable,
    VigilClient,
    VigilError,
)
from vigil_main_backend.gateway import MainBackend

from .gateway_stack import controlled_stack, gateway_config, wait_connected


def run(coro):
    return asyncio.run(asyncio.wait_for(coro, timeout=90))


def test_analyze_health_and_typed_errors():
    async def scenario():
        async with controlled_stack() as (url, _gateway, _backends), VigilClient(url) as client:
            pong = await client.health()
            assert pong["type"] == "pong" and pong["status"] == "healthy"
            assert set(pong["backends"]) == {"fatigue", "emotion", "eeg"}

            result = await client.analyze(
                image=b"\xff\xd8jpeg bytes", eeg={"sfreq": 128}, session_id="s1", timestamp=1.5
            )
            assert isinstance(result, AnalyzeResult) and result.errors == {}
            # bytes are sent as base64; each backend gets only its own input plus the shared fields
            image_b64 = base64.b64encode(b"\xff\xd8jpeg bytes").decode()
            assert result.results["fatigue"]["echo"] == {"image": image_b64, "session_id": "s1", "timestamp": 1.5}
            assert result.results["eeg"]["echo"] == {"eeg": {"sfreq": 128}, "session_id": "s1", "timestamp": 1.5}
            assert result.raw["type"] == "analyze_response"

            assert (await client.infer("fatigue", {"op": "echo", "k": 1}))["echo"] == {"op": "echo", "k": 1}
            with pytest.raises(BadRequest, match="unknown model 'nope'") as info:
                await client.infer("nope", {})
            assert info.value.code == "bad_request" and info.value.request_id
            with pytest.raises(BadRequest, match="not a cat"):
                await client.infer("eeg", {"op": "bad", "message": "not a cat"})
            with pytest.raises(Internal, match="kaput"):
                await client.infer("emotion", {"op": "raise", "message": "kaput"})
            with pytest.raises(BadRequest, match="none of the inputs"):
                await client.analyze(session_id="only")
            # the connection is still good after every error
            assert (await client.infer("eeg", {"x": 2}))["echo"] == {"x": 2}

    run(scenario())


def test_pipelining_is_bounded_and_replies_are_correlated():
    async def scenario():
        async with (
            controlled_stack(names=("fatigue",)) as (url, _gateway, _backends),
            VigilClient(url, max_in_flight=3) as client,
        ):
            peak = 0

            async def watch():
                nonlocal peak
                while True:
                    peak = max(peak, client.in_flight)
                    await asyncio.sleep(0.002)

            watcher = asyncio.create_task(watch())
            # later requests sleep less, so replies come back out of order
            calls = [client.infer("fatigue", {"op": "sleep", "ms": 60 - 5 * i, "n": i}) for i in range(12)]
            replies = await asyncio.gather(*calls)
            watcher.cancel()
            assert [r["echo"]["n"] for r in replies] == list(range(12))
            assert 2 <= peak <= 3, peak

    run(scenario())


def test_client_timeout_and_server_timeout_are_both_Timeout():
    async def scenario():
        async with controlled_stack(names=("eeg",), request_timeout=0.3) as (url, _gateway, _backends):
            async with VigilClient(url) as client:
                with pytest.raises(Timeout) as info:  # the gateway's own deadline
                    await client.infer("eeg", {"op": "sleep", "ms": 800})
                assert "timeout" in str(info.value)
            async with VigilClient(url, request_timeout=0.2) as client:
                with pytest.raises(Timeout, match="client-side"):
                    await client.infer("eeg", {"op": "sleep", "ms": 250})
                assert client.in_flight == 0

    run(scenario())


def test_reconnects_after_the_server_restarts():
    async def scenario():
        port = free_port()
        async with controlled_stack(names=("fatigue",)) as (_url, _gateway, backends):
            ports = {"fatigue": backends["fatigue"].bound_port}
            # grace 0.1 s: the first gateway drops the connection with a request still in flight
            first = MainBackend(gateway_config(ports, port, main={"grace_period": 0.1}))
            client = VigilClient(f"ws://127.0.0.1:{port}", reconnect_interval=0.1, max_reconnect_attempts=2)
            try:
                async with serving(first):
                    await wait_connected(first)
                    await client.connect()
                    assert (await client.infer("fatigue", {"a": 1}))["echo"] == {"a": 1}
                    slow = asyncio.create_task(client.infer("fatigue", {"op": "sleep", "ms": 3000}))
                    await asyncio.sleep(0.3)
                with pytest.raises(Unavailable):  # failed, not resent
                    await slow
                with pytest.raises(Unavailable, match="cannot connect"):  # nobody listens: retries, then gives up
                    await client.infer("fatigue", {"a": 2})
                second = MainBackend(gateway_config(ports, port))
                async with serving(second):
                    await wait_connected(second)
                    assert (await client.infer("fatigue", {"a": 3}))["echo"] == {"a": 3}
                    assert client.reconnects == 1
            finally:
                await client.close()

    run(scenario())


def _auth_server(token: str, seen: list):
    """A minimal handshake-checking server: the contract of the gateway's optional auth."""

    def process_request(connection, request):
        seen.append(request.headers.get("Authorization"))
        if request.headers.get("Authorization") != f"Bearer {token}":
            body = b"missing or wrong token\n"
            headers = Headers([("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
            return Response(401, http.HTTPStatus(401).phrase, headers, body)
        return None

    async def handler(ws):
        async for frame in ws:
            await ws.send(frame.replace('"health_check"', '"pong"'))

    return serve(handler, "127.0.0.1", 0, process_request=process_request)


def test_token_is_sent_as_bearer_header_and_401_is_Unauthorized():
    async def scenario():
        seen: list = []
        async with _auth_server("s3cret", seen) as server:
            url = f"ws://127.0.0.1:{server.sockets[0].getsockname()[1]}"
            with pytest.raises(Unauthorized, match="401"):
                async with VigilClient(url):
                    pass
            with pytest.raises(Unauthorized):
                async with VigilClient(url, token="wrong"):
                    pass
            async with VigilClient(url, token="s3cret") as client:
                assert (await client.health())["type"] == "pong"
        assert seen == [None, "Bearer wrong", "Bearer s3cret"]
        assert issubclass(Unauthorized, VigilError)

    run(scenario())


def test_the_gateway_with_auth_on_takes_the_token_and_refuses_without_it():
    async def scenario():
        async with controlled_stack(names=("eeg",), api_tokens=("tok-1", "tok-2")) as (url, _gateway, _backends):
            with pytest.raises(Unauthorized):
                async with VigilClient(url):
                    pass
            with pytest.raises(Unauthorized):
                async with VigilClient(url, token="tok-3"):
                    pass
            async with VigilClient(url, token="tok-2") as client:
                assert (await client.infer("eeg", {"k": 1}))["echo"]["k"] == 1
                pong = await client.health()
                assert pong["backends"]["eeg"]["ready"] is True  # a token holder gets the details

    run(scenario())
