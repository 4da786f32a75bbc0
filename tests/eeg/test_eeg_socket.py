"""The EEG backend over a real WebSocket on 127.0.0.1: seed protocol, bad inputs, HTTP probes."""

from __future__ import annotations

import asyncio

from eeg import samples

from support.net import connect_ws, http_get, rpc, serving, wait_ready
from vigil_eeg.backend import EEGBackend
from vigil_eeg.settings import EEGSettings


def run(coro):
    return asyncio.run(asyncio.wait_for(coro, timeout=60))


def test_seed_sequence_bad_inputs_and_connection_survival():
    async def scenario():
        backend = EEGBackend("127.0.0.1", 0, settings=EEGSettings())
        async with serving(backend) as url:
            await wait_ready(backend)
            port = backend.bound_port
            assert (await asyncio.to_thread(http_get, f"http://127.0.0.1:{port}/readyz"))[0] == 200
            async with await connect_ws(url) as ws:
                pong = await rpc(ws, {"type": "health_check", "request_id": "h"})
                assert pong["type"] == "pong" and pong["status"] == "healthy"
                assert pong["model"]["name"] == "eeg-bandpower"

                reply = await rpc(ws, {"type": "inference_request", "request_id": "v1", "data": samples.valid_data()})
                assert reply["type"] == "inference_response" and reply["request_id"] == "v1"
                assert reply["data"]["window_full"] is True
                assert reply["data"]["fatigue_level"] in ("alert", "drowsy", "very_drowsy")

                for i, (label, data) in enumerate(samples.bad_inputs()):
                    rid = f"bad-{i}"
                    err = await rpc(ws, {"type": "inference_request", "request_id": rid, "data": data})
                    assert err["type"] == "error", (label, err)
                    assert err["code"] == "bad_request", (label, err)
                    assert err["request_id"] == rid
                    assert "data" in err["error"] or "not valid JSON" in err["error"], (label, err)
                    # the same connection still serves valid requests
                    ok = await rpc(
                        ws, {"type": "inference_request", "request_id": f"ok-{i}", "data": samples.valid_data()}
                    )
                    assert ok["type"] == "inference_response", (label, ok)

                # a changed sfreq within a session is refused on the wire too, and the session survives
                changed = samples.valid_data()
                changed["eeg"]["sfreq"] = 256.0
                err = await rpc(ws, {"type": "inference_request", "request_id": "chg", "data": changed})
                assert err["type"] == "error" and err["code"] == "bad_request" and "sfreq changed" in err["error"]
                again = await rpc(ws, {"type": "inference_request", "request_id": "v2", "data": samples.valid_data()})
                assert again["type"] == "inference_response"

    run(scenario())


def test_streamed_chunks_over_the_socket():
    async def scenario():
        backend = EEGBackend("127.0.0.1", 0, settings=EEGSettings())
        async with serving(backend) as url:
            await wait_ready(backend)
            x = samples.synthetic_eeg_uv(seconds=5.0)
            async with await connect_ws(url) as ws:
                replies = []
                for k, start in enumerate(range(0, x.shape[1], 32)):  # 0.25 s chunks
                    data = {
                        "session_id": "sock",
                        "timestamp": 50.0 + start / samples.SFREQ,
                        "eeg": samples.eeg_payload_b64(x[:, start : start + 32], samples.CH_NAMES),
                    }
                    reply = await rpc(ws, {"type": "inference_request", "request_id": f"c{k}", "data": data})
                    assert reply["type"] == "inference_response", reply
                    replies.append(reply["data"])
            assert [r["window_full"] for r in replies].count(True) == 5
            assert replies[-1]["window"] == {"start": 51.0, "end": 55.0}
            assert replies[-1]["relative_power"]["mean"]["alpha"] > 0.4

    run(scenario())
