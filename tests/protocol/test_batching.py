"""Dynamic batching in BaseModelBackend: grouping, per-request replies, errors and timeouts."""

import asyncio
import json
import threading
import time

from shared_protocol import BadRequestError, BaseModelBackend
from support.net import connect_ws, rpc, serving, wait_ready


class SummingBackend(BaseModelBackend):
    """Batch-aware test model: one call computes every request's sum; records the batch sizes."""

    model_name = "summing"

    def __init__(self, **kwargs):
        super().__init__("127.0.0.1", 0, **kwargs)
        self.calls: list[int] = []
        self.gate = threading.Event()
        self.gate.set()

    def initialize_model(self):
        pass

    def cleanup(self):
        pass

    def process_inference(self, data):
        return self.process_batch([data])[0]

    def process_batch(self, batch):
        self.gate.wait(5)
        self.calls.append(len(batch))
        out = []
        for data in batch:
            values = data.get("values")
            if not isinstance(values, list):
                out.append(BadRequestError("field 'values' must be a list of numbers"))
            else:
                time.sleep(data.get("sleep_ms", 0) / 1000)
                out.append({"sum": sum(values), "n": len(values)})
        return out


def run(coro):
    return asyncio.run(asyncio.wait_for(coro, timeout=60))


def _request(i, **data):
    return json.dumps({"type": "inference_request", "request_id": f"r{i}", "data": data})


def test_concurrent_requests_share_batches_and_match_single_results():
    async def scenario():
        backend = SummingBackend(max_batch_size=8, max_queue_delay_ms=20)
        async with serving(backend) as url:
            await wait_ready(backend)
            async with await connect_ws(url) as ws:
                singles = {}
                for i in range(5):  # one at a time: batches of one
                    reply = await rpc(ws, _request(i, values=[i, i + 1]))
                    singles[reply["request_id"]] = reply["data"]
                    assert reply["timing"]["batch_size"] == 1
                backend.gate.clear()  # hold the worker so requests pile up
                for i in range(20):
                    await ws.send(_request(i, values=[i, i + 1]))
                await asyncio.sleep(0.1)
                backend.gate.set()
                replies = [json.loads(await asyncio.wait_for(ws.recv(), 5)) for _ in range(20)]
                assert sorted(r["request_id"] for r in replies) == sorted(f"r{i}" for i in range(20))
                for r in replies:
                    i = int(r["request_id"][1:])
                    assert r["data"] == {"sum": 2 * i + 1, "n": 2}
                    if r["request_id"] in singles:
                        assert r["data"] == singles[r["request_id"]]
                assert max(r["timing"]["batch_size"] for r in replies) == 8
                pong = await rpc(ws, {"type": "health_check"})
                sizes = pong["batching"]["batch_sizes"]
                assert sum(int(k) * v for k, v in sizes.items()) == 25
                assert sizes.get("8", 0) >= 2
                assert backend.calls[:5] == [1] * 5

    run(scenario())


def test_one_bad_request_fails_alone_in_its_batch():
    async def scenario():
        backend = SummingBackend(max_batch_size=4, max_queue_delay_ms=50)
        async with serving(backend) as url:
            await wait_ready(backend)
            async with await connect_ws(url) as ws:
                await ws.send(_request(0, values=[1]))
                await ws.send(_request(1, values="nope"))
                await ws.send(_request(2, values=[2, 3]))
                replies = {r["request_id"]: r for r in [json.loads(await ws.recv()) for _ in range(3)]}
                assert replies["r0"]["data"]["sum"] == 1 and replies["r2"]["data"]["sum"] == 5
                assert replies["r1"]["code"] == "bad_request" and "'values'" in replies["r1"]["error"]
                assert backend.calls == [3]

    run(scenario())


def test_each_request_keeps_its_own_deadline():
    async def scenario():
        backend = SummingBackend(max_batch_size=4, max_queue_delay_ms=0, request_timeout=0.3)
        async with serving(backend) as url:
            await wait_ready(backend)
            async with await connect_ws(url) as ws:
                await ws.send(_request(0, values=[1], sleep_ms=600))
                await asyncio.sleep(0.05)
                await ws.send(_request(1, values=[1]))  # queued behind a slow batch: times out unseen
                replies = {r["request_id"]: r for r in [json.loads(await ws.recv()) for _ in range(2)]}
                assert replies["r0"]["code"] == "timeout" and replies["r1"]["code"] == "timeout"
                await asyncio.sleep(0.6)
                assert backend.calls == [1]  # r1 was dropped from the next batch, not computed
                assert (await rpc(ws, _request(2, values=[4])))["data"]["sum"] == 4

    run(scenario())


def test_default_process_batch_loops_over_process_inference():
    from support.controlled_backend import ControlledBackend

    async def scenario():
        backend = ControlledBackend(max_batch_size=4, max_queue_delay_ms=30)
        async with serving(backend) as url:
            await wait_ready(backend)
            async with await connect_ws(url) as ws:
                await ws.send(json.dumps({"type": "inference_request", "request_id": "a", "data": {"k": 1}}))
                await ws.send(json.dumps({"type": "inference_request", "request_id": "b", "data": {"op": "raise"}}))
                replies = {r["request_id"]: r for r in [json.loads(await ws.recv()) for _ in range(2)]}
                assert replies["a"]["data"]["echo"] == {"k": 1} and replies["a"]["timing"]["batch_size"] == 2
                assert replies["b"]["code"] == "internal"

    run(scenario())
