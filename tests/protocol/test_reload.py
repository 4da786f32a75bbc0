"""Hot reload in BaseModelBackend: versions, swap between batches under load, failures, rollback, polling."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

import pytest
from websockets.asyncio.client import connect

from shared_protocol import BadRequestError, BaseModelBackend
from shared_protocol.fields import common_fields
from shared_protocol.reload import ReloadRefused, VersionHistory, memory_check, model_digest
from shared_protocol.testing import BackendTestClient
from tests.support.net import rpc, serving, wait_ready


def write_model(directory: Path, weights: list[float]) -> Path:
    """A model directory: a weight vector (the model) and a note file (digest covers every file)."""
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "weights.json").write_text(json.dumps({"weights": weights}))
    (directory / "README").write_text("test model\n")
    return directory


class LinearModel:
    """y = w . x: a real (tiny) model read from its directory."""

    def __init__(self, directory: str) -> None:
        weights = json.loads((Path(directory) / "weights.json").read_text())["weights"]
        if not weights or not all(isinstance(w, (int, float)) for w in weights):
            raise ValueError(f"{directory}/weights.json: 'weights' must be a list of numbers")
        self.weights = [float(w) for w in weights]

    def __call__(self, x: list[float]) -> float:
        if len(x) != len(self.weights):
            raise BadRequestError(f"field 'x' must hold {len(self.weights)} numbers")
        return sum(w * v for w, v in zip(self.weights, x, strict=True))


class LinearBackend(BaseModelBackend):
    model_name = "linear"

    def __init__(self, model_dir: Path, **kwargs) -> None:
        super().__init__("127.0.0.1", 0, **kwargs)
        self.model_dir = str(model_dir)
        self.counts: dict[str, int] = {}  # per-session state that must survive reloads
        self.load_delay_s = 0.0

    def initialize_model(self) -> None:
        self.model = LinearModel(self.model_dir)

    def model_source(self) -> str:
        return self.model_dir

    def load_model(self, source: str) -> LinearModel:
        time.sleep(self.load_delay_s)  # a slow load: requests keep flowing meanwhile
        model = LinearModel(source)
        model([0.0] * len(model.weights))  # warm-up
        return model

    def swap_model(self, loaded: LinearModel) -> None:
        self.model = loaded

    def process_inference(self, data):
        key = common_fields(data).session_key
        self.counts[key] = self.counts.get(key, 0) + 1
        return {"y": self.model(data.get("x", [])), "count": self.counts[key]}


def wait_reload(client: BackendTestClient, timeout: float = 20.0) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        model = client.health_check()["model"]
        if model["reload"]["state"] != "loading":
            return model
        if time.monotonic() > deadline:
            raise TimeoutError("reload did not finish")
        time.sleep(0.01)


def test_digest_names_the_files(tmp_path):
    a = write_model(tmp_path / "a", [1.0, 2.0])
    b = write_model(tmp_path / "b", [1.0, 2.0])
    assert model_digest(a) == model_digest(b)  # the same files give the same version anywhere
    write_model(b, [1.0, 3.0])
    assert model_digest(a) != model_digest(b) and model_digest(a).startswith("sha256-")
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError):
        model_digest(tmp_path / "empty")


def test_history_keeps_the_last_n():
    from shared_protocol.reload import ModelVersion

    history = VersionHistory(2)
    for v in ("v1", "v2", "v3"):
        history.add(ModelVersion(v, f"/m/{v}"))
    assert [e["version"] for e in history.to_list()] == ["v2", "v3"] and history.get("v1") is None


def test_memory_limit_refuses(tmp_path):
    with pytest.raises(ReloadRefused, match="max_reload_memory_bytes"):
        memory_check(10**6, 1024, cgroup_root=str(tmp_path))
    memory_check(10**6, 10**15, cgroup_root=str(tmp_path))
    (tmp_path / "memory.max").write_text("4096\n")
    (tmp_path / "memory.current").write_text("1000\n")
    with pytest.raises(ReloadRefused, match="container's memory limit"):
        memory_check(5000, None, cgroup_root=str(tmp_path))
    memory_check(3000, None, cgroup_root=str(tmp_path))


def test_reload_swaps_version_and_rollback_returns(tmp_path):
    v1 = write_model(tmp_path / "v1", [1.0, 1.0])
    v2 = write_model(tmp_path / "v2", [2.0, 3.0])
    with BackendTestClient(LinearBackend(v1)) as client:
        first = client.request({"x": [1, 1], "session_id": "s"})
        assert first["data"] == {"y": 2.0, "count": 1} and first["model_version"] == model_digest(v1)
        pong = client.health_check()
        assert pong["model"]["version"] == model_digest(v1) and pong["model"]["reload"]["state"] == "idle"

        accepted = client.send({"type": "reload_model", "request_id": "r", "path": str(v2)})
        assert accepted == {"type": "reload_accepted", "request_id": "r", "path": str(v2)}
        model = wait_reload(client)
        assert model["version"] == model_digest(v2) and model["reload"]["succeeded"] == 1
        code, ready = client.backend._readyz()  # /readyz names the version too
        assert code == 200 and ready["model"]["version"] == model_digest(v2)
        assert ready["model"]["reload"]["state"] == "idle"
        reply = client.request({"x": [1, 1], "session_id": "s"})
        assert reply["data"] == {"y": 5.0, "count": 2}  # new weights, the session went on
        assert reply["model_version"] == model_digest(v2)

        # Rollback by version alone: it comes from its recorded path.
        assert client.send({"type": "reload_model", "version": model_digest(v1)})["type"] == "reload_accepted"
        assert wait_reload(client)["version"] == model_digest(v1)
        assert client.infer({"x": [1, 1], "session_id": "s"}) == {"y": 2.0, "count": 3}
        assert [v["version"] for v in client.health_check()["model"]["versions"]] == [
            model_digest(v2),
            model_digest(v1),
        ]


def test_failed_reload_keeps_the_old_model_and_reports(tmp_path):
    v1 = write_model(tmp_path / "v1", [1.0])
    corrupt = tmp_path / "corrupt"
    corrupt.mkdir()
    (corrupt / "weights.json").write_text('{"weights": [1.0,')  # truncated copy
    with BackendTestClient(LinearBackend(v1)) as client:
        assert client.send({"type": "reload_model", "path": str(corrupt)})["type"] == "reload_accepted"
        model = wait_reload(client)
        assert model["reload"]["state"] == "failed" and "JSONDecodeError" in model["reload"]["error"]
        assert model["version"] == model_digest(v1) and model["reload"]["failed"] == 1
        assert client.health_check()["status"] == "healthy"
        reply = client.request({"x": [3.0]})
        assert reply["data"]["y"] == 3.0 and reply["model_version"] == model_digest(v1)


@pytest.mark.parametrize(
    ("frame", "expected"),
    [
        ({"type": "reload_model", "request_id": "a", "version": "sha256-0000"}, "unknown version"),
        ({"type": "reload_model", "request_id": "b", "path": "/etc"}, "outside the model repository"),
        ({"type": "reload_model", "request_id": "c", "path": 3}, "field 'path' must be"),
        ({"type": "reload_model", "request_id": "d", "version": ""}, "field 'version' must be"),
    ],
)
def test_bad_reload_requests_get_one_error(tmp_path, frame, expected):
    v1 = write_model(tmp_path / "v1", [1.0])
    with BackendTestClient(LinearBackend(v1)) as client:
        reply = client.send(frame)
        assert reply["type"] == "error" and reply["code"] == "bad_request" and expected in reply["error"]
        assert reply["request_id"] == frame["request_id"]
        assert client.health_check()["model"]["reload"]["refused"] == 1


def test_memory_limit_refuses_reload_with_a_clear_error(tmp_path):
    v1 = write_model(tmp_path / "v1", [1.0])
    with BackendTestClient(LinearBackend(v1, max_reload_memory_bytes=1024)) as client:
        reply = client.send({"type": "reload_model", "path": str(v1)})
        assert reply["code"] == "bad_request" and "max_reload_memory_bytes (1024 bytes)" in reply["error"]


def test_a_backend_without_load_model_refuses():
    class Fixed(BaseModelBackend):
        def initialize_model(self):
            pass

        def process_inference(self, data):
            return {"n": len(data)}

    with BackendTestClient(Fixed()) as client:
        reply = client.send({"type": "reload_model"})
        assert reply["code"] == "bad_request" and "cannot reload" in reply["error"]


def test_polling_reloads_changed_files(tmp_path):
    v1 = write_model(tmp_path / "live", [1.0])
    with BackendTestClient(LinearBackend(v1, model_poll_interval_s=0.05)) as client:
        before = client.health_check()["model"]["version"]
        write_model(v1, [4.0])  # files replaced in place
        deadline = time.monotonic() + 20
        while client.health_check()["model"]["version"] == before:
            assert time.monotonic() < deadline, "poll did not reload"
            time.sleep(0.02)
        assert client.infer({"x": [1.0]})["y"] == 4.0


def test_reload_under_load_every_request_answered_once_and_versions_move_forward(tmp_path):
    """4 clients stream at full speed over sockets while two reloads happen."""
    v1 = write_model(tmp_path / "v1", [1.0])
    v2 = write_model(tmp_path / "v2", [2.0])
    v3 = write_model(tmp_path / "v3", [3.0])
    versions = [model_digest(v) for v in (v1, v2, v3)]
    backend = LinearBackend(v1, max_queue=64)
    backend.load_delay_s = 0.2

    async def client(url: str, name: str, stop: asyncio.Event) -> list[dict]:
        replies: list[dict] = []
        async with connect(url) as ws:
            n = 0
            while not stop.is_set() or n < 50:
                ids = [f"{name}-{n + i}" for i in range(4)]  # 4 in flight: full speed, pipelined
                for rid in ids:
                    await ws.send(
                        json.dumps(
                            {"type": "inference_request", "request_id": rid, "data": {"x": [1.0], "session_id": name}}
                        )
                    )
                for _ in ids:
                    replies.append(json.loads(await asyncio.wait_for(ws.recv(), 20)))
                n += len(ids)
        return replies

    async def scenario():
        async with serving(backend) as url:
            await wait_ready(backend)
            stop = asyncio.Event()
            clients = [asyncio.create_task(client(url, f"c{i}", stop)) for i in range(4)]
            async with connect(url) as admin:
                for target in (v2, v3):
                    await asyncio.sleep(0.3)
                    assert (await rpc(admin, {"type": "reload_model", "path": str(target)}))[
                        "type"
                    ] == "reload_accepted"
                    while (await rpc(admin, {"type": "health_check"}))["model"]["reload"]["state"] == "loading":
                        await asyncio.sleep(0.02)
                await asyncio.sleep(0.3)
                final = await rpc(admin, {"type": "health_check"})
            stop.set()
            return final, await asyncio.gather(*clients)

    final, per_client = asyncio.run(scenario())
    assert final["model"]["version"] == versions[2] and final["model"]["reload"]["succeeded"] == 2
    for name, replies in zip(("c0", "c1", "c2", "c3"), per_client, strict=True):
        ids = [r["request_id"] for r in replies]
        assert len(ids) == len(set(ids))  # every request answered exactly once
        assert all(r["type"] == "inference_response" for r in replies), [r for r in replies if r["type"] == "error"][:3]
        assert [r["data"]["count"] for r in replies] == list(range(1, len(replies) + 1))  # the session went on
        seen = [versions.index(r["model_version"]) for r in replies]
        assert seen == sorted(seen), f"{name}: version flipped back"  # changes at one point, never back
        assert {r["data"]["y"] for r in replies} <= {1.0, 2.0, 3.0}
        for r in replies:  # each reply computed by the version it names
            assert r["data"]["y"] == versions.index(r["model_version"]) + 1.0
    assert any(versions.index(r["model_version"]) == 1 for replies in per_client for r in replies)


def test_operator_command_reloads_and_reports(tmp_path, capsys):
    from shared_protocol.reload import main

    v1 = write_model(tmp_path / "v1", [1.0])
    v2 = write_model(tmp_path / "v2", [5.0])
    corrupt = write_model(tmp_path / "corrupt", [1.0])
    (corrupt / "weights.json").write_text("[")
    backend = LinearBackend(v1)

    async def scenario():
        async with serving(backend) as url:
            await wait_ready(backend)
            loop = asyncio.get_running_loop()
            ok = await loop.run_in_executor(None, main, ["--url", url, "--path", str(v2)])
            failed = await loop.run_in_executor(None, main, ["--url", url, "--path", str(corrupt)])
            refused = await loop.run_in_executor(None, main, ["--url", url, "--version", "sha256-nope"])
            return ok, failed, refused

    assert asyncio.run(scenario()) == (0, 1, 2)
    out = capsys.readouterr()
    assert model_digest(v2) in out.out and "unknown version" in out.err


def test_gateway_admin_route_reloads_every_replica_with_a_token(tmp_path):
    """reload_model with `model` on the main backend: token-only, forwarded to the backend, outcome in its pong."""
    from vigil_main_backend.config import Config
    from vigil_main_backend.gateway import MainBackend

    v1 = write_model(tmp_path / "v1", [1.0])
    v2 = write_model(tmp_path / "v2", [7.0])
    token = "admin-token-for-the-test"
    backend = LinearBackend(v1, api_tokens=[token])

    async def scenario():
        async with serving(backend) as backend_url:
            await wait_ready(backend)
            port = int(backend_url.rsplit(":", 1)[1])
            spec = {
                "main_backend": {"host": "127.0.0.1", "port": 0, "health_interval": 0.5},
                "model_backends": {"linear": {"host": "127.0.0.1", "port": port, "reconnect_interval": 0.2}},
            }
            gateway = MainBackend(Config.model_validate(spec), api_tokens=(token,))
            headers = {"Authorization": f"Bearer {token}"}
            async with serving(gateway) as url, connect(url, additional_headers=headers) as ws:
                while not gateway.clients["linear"].ready:
                    await asyncio.sleep(0.02)
                unknown = await rpc(ws, {"type": "reload_model", "request_id": "a", "model": "nope"})
                no_model = await rpc(ws, {"type": "reload_model", "request_id": "b", "path": str(v2)})
                bad_version = await rpc(ws, {"type": "reload_model", "request_id": "c", "model": "linear",
                                                 "version": "sha256-unknown"})  # fmt: skip
                accepted = await rpc(ws, {"type": "reload_model", "request_id": "d", "model": "linear",
                                              "path": str(v2)})  # fmt: skip
                while backend.reload_state.phase == "loading":
                    await asyncio.sleep(0.02)
                reply = await rpc(ws, {"type": "inference_request", "request_id": "e", "model": "linear",
                                           "data": {"x": [1.0]}})  # fmt: skip
                return unknown, no_model, bad_version, accepted, reply

    unknown, no_model, bad_version, accepted, reply = asyncio.run(asyncio.wait_for(scenario(), 60))
    assert unknown["code"] == "bad_request" and "unknown model" in unknown["error"]
    assert no_model["code"] == "bad_request" and "field 'model'" in no_model["error"]
    assert bad_version["code"] == "bad_request" and "unknown version" in bad_version["error"]
    assert bad_version["request_id"] == "c" and len(bad_version["replicas"]) == 1
    assert accepted["type"] == "reload_accepted" and accepted["request_id"] == "d" and accepted["model"] == "linear"
    assert [a["type"] for a in accepted["replicas"].values()] == ["reload_accepted"]
    assert reply["data"]["y"] == 7.0  # the new weights answer through the gateway
    assert backend.model_version == model_digest(v2)


def test_gateway_admin_route_is_off_without_auth(tmp_path):
    from vigil_main_backend.config import Config
    from vigil_main_backend.gateway import MainBackend

    spec = {"main_backend": {"host": "127.0.0.1", "port": 0}, "model_backends": {}}
    gateway = MainBackend(Config.model_validate(spec), api_tokens=())

    async def scenario():
        async with serving(gateway) as url, connect(url) as ws:
            return await rpc(ws, {"type": "reload_model", "request_id": "a", "model": "eeg", "path": "/x"})

    reply = asyncio.run(asyncio.wait_for(scenario(), 30))
    assert reply["code"] == "bad_request" and "needs auth on" in reply["error"] and reply["request_id"] == "a"


def test_swap_gate_waits_for_running_batches_and_holds_new_ones_back():
    """The gate every batch passes (`reading`, a plain context manager): a swap waits for the
    running batch; a batch that arrives while the swap waits runs after it."""
    import threading
    import time

    from shared_protocol.backend import _SwapGate

    gate = _SwapGate()
    events: list[str] = []
    entered, release = threading.Event(), threading.Event()

    def batch(name: str, hold: bool) -> None:
        with gate.reading():
            events.append(f"{name} in")
            if hold:
                entered.set()
                release.wait(5)
            events.append(f"{name} out")

    def swap() -> None:
        with gate.writing():
            events.append("swap")

    first = threading.Thread(target=batch, args=("a", True))
    first.start()
    assert entered.wait(5)
    swapper = threading.Thread(target=swap)
    swapper.start()
    deadline = time.monotonic() + 5
    while not gate._writers_waiting:
        assert time.monotonic() < deadline
        time.sleep(0.005)
    late = threading.Thread(target=batch, args=("b", False))
    late.start()
    time.sleep(0.1)
    assert events == ["a in"]  # the swap waits for a; b waits for the swap
    release.set()
    for thread in (first, swapper, late):
        thread.join(5)
    assert events == ["a in", "a out", "swap", "b in", "b out"]
    assert gate._readers == 0 and not gate._writer and not gate._writers_waiting
