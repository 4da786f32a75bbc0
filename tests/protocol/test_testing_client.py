"""shared_protocol.testing: a backend class tested in-process through the real protocol path."""

from __future__ import annotations

import pytest

from shared_protocol import BadRequestError, BaseModelBackend, ErrorCode, ProtocolError
from shared_protocol.fields import common_fields
from shared_protocol.testing import BackendTestClient


class Doubler(BaseModelBackend):
    model_name = "doubler"

    def initialize_model(self) -> None:
        self.factor = 2

    def process_inference(self, data):
        if not isinstance(data.get("x"), (int, float)):
            raise BadRequestError("field 'x' must be a number")
        return {"y": data["x"] * self.factor, "session": common_fields(data).session_id, "owner": data.owner}


def test_three_lines():
    with BackendTestClient(Doubler()) as client:
        assert client.infer({"x": 21})["y"] == 42


def test_errors_codes_and_the_real_codec():
    with BackendTestClient(Doubler(), owner="alice") as client:
        with pytest.raises(ProtocolError) as info:
            client.infer({"x": "no"})
        assert info.value.code is ErrorCode.BAD_REQUEST and "'x'" in info.value.message
        assert client.infer({"x": 1, "session_id": "s"}) == {"y": 2, "session": "s", "owner": "alice"}
        reply = client.send('{"type":"inference_request","request_id":"n","data":{"x":NaN}}')
        assert reply["code"] == "bad_request" and reply["request_id"] == "n"
        pong = client.health_check()
        assert pong["status"] == "healthy" and pong["model"]["name"] == "doubler"


def test_batches_and_unencodable_results():
    class Batched(Doubler):
        def process_batch(self, batch):
            return [{"y": float("nan")} if d.get("nan") else {"y": d["x"], "n": len(batch)} for d in batch]

    with BackendTestClient(Batched(max_batch_size=4)) as client:
        assert client.infer({"x": 3})["y"] == 3
        reply = client.request({"x": 1, "nan": True})
        assert reply["code"] == "internal" and "cannot be encoded" in reply["error"]


def test_a_model_that_fails_to_load_raises_at_enter():
    class Broken(Doubler):
        def initialize_model(self):
            raise FileNotFoundError("weights.bin")

    with pytest.raises(Exception, match="weights.bin"), BackendTestClient(Broken()):
        pass


def test_inline_backend_runs_on_the_event_loop_with_the_same_answers():
    import threading

    seen: list[str] = []

    class Inline(Doubler):
        run_inline = True

        def process_inference(self, data):
            seen.append(threading.current_thread().name)
            return super().process_inference(data)

    with BackendTestClient(Inline()) as client:
        assert client.infer({"x": 4})["y"] == 8
        assert client.request({"x": "no"})["code"] == "bad_request"
    assert seen and all(name == "backend-test-client" for name in seen)  # the loop's thread, no worker
