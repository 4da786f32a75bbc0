"""scripts/replay_edf.py with pyedflib's test_generator.edf, against the EEG backend and the gateway."""

from __future__ import annotations

import asyncio
import importlib.util
import json
import sys
import threading
import time
from pathlib import Path

import pytest

from support.net import serving, wait_ready
from vigil_eeg.backend import EEGBackend
from vigil_eeg.settings import EEGSettings

REPO = Path(__file__).resolve().parents[2]


def _load_script():
    spec = importlib.util.spec_from_file_location("replay_edf", REPO / "scripts" / "replay_edf.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


replay_edf = _load_script()


@pytest.fixture(scope="module")
def edf_path() -> str:
    import pyedflib

    path = Path(pyedflib.__file__).parent / "data" / "test_generator.edf"
    assert path.is_file()
    return str(path)


def run(coro):
    return asyncio.run(asyncio.wait_for(coro, timeout=60))


def test_direct_replay_as_fast_as_possible(edf_path):
    async def scenario():
        backend = EEGBackend("127.0.0.1", 0, settings=EEGSettings())
        async with serving(backend) as url:
            await wait_ready(backend)
            args = replay_edf.parse_args([edf_path, "--url", url, "--direct", "--speed", "0", "--max-seconds", "6"])
            return await replay_edf.replay(args)

    summary = run(scenario())
    assert summary.sent == summary.results == 12 and not summary.errors
    last = summary.last_result
    assert last["sfreq"] == 200.0 and last["n_channels"] == 11 and last["window_full"]
    assert last["window"] == {"start": 2.0, "end": 6.0}
    # the file's "sine 50 Hz" channel is pure mains frequency: the notch leaves nothing of it
    assert "sine 50 Hz" in last["bad_channels"]
    # its 8-8.5 Hz sines are alpha, its 15/17 Hz sines beta, at their own channels
    per_channel = last["relative_power"]["per_channel"]
    assert per_channel["sine 8.5 Hz"]["alpha"] > 0.95
    assert per_channel["sine 15 Hz"]["beta"] > 0.95
    assert summary.levels and sum(summary.levels.values()) == 9  # analysed from 2 s on


def test_real_time_pacing(edf_path):
    async def scenario():
        backend = EEGBackend("127.0.0.1", 0, settings=EEGSettings())
        async with serving(backend) as url:
            await wait_ready(backend)
            args = replay_edf.parse_args([edf_path, "--url", url, "--direct", "--speed", "4", "--max-seconds", "2"])
            started = time.monotonic()
            summary = await replay_edf.replay(args)
            return summary, time.monotonic() - started

    summary, elapsed = run(scenario())
    assert summary.results == 4
    assert elapsed >= 0.45  # 2 s of signal at 4x speed


def test_bad_request_replies_are_counted_as_errors(edf_path):
    async def scenario():
        backend = EEGBackend("127.0.0.1", 0, settings=EEGSettings(max_channels=4))
        async with serving(backend) as url:
            await wait_ready(backend)
            args = replay_edf.parse_args([edf_path, "--url", url, "--direct", "--speed", "0", "--max-seconds", "1"])
            return await replay_edf.replay(args)

    summary = run(scenario())
    assert summary.results == 0 and len(summary.errors) == 2
    assert summary.errors[0]["code"] == "bad_request" and "at most 4" in summary.errors[0]["error"]


def test_through_the_main_backend_relay_and_analyze(edf_path):
    import vigil_main_backend.config as config_mod
    import vigil_main_backend.gateway as gateway_mod

    async def scenario():
        backend = EEGBackend("127.0.0.1", 0, settings=EEGSettings())
        async with serving(backend):
            await wait_ready(backend)
            config = config_mod.Config.model_validate(
                {
                    "main_backend": {"host": "127.0.0.1", "port": 0, "health_interval": 0.5},
                    "model_backends": {
                        "eeg": {"host": "127.0.0.1", "port": backend.bound_port, "reconnect_interval": 0.2}
                    },
                }
            )
            gateway = gateway_mod.MainBackend(config)
            async with serving(gateway) as url:
                deadline = time.monotonic() + 10
                while not gateway.clients["eeg"].ready:
                    assert time.monotonic() < deadline, "gateway never connected to the eeg backend"
                    await asyncio.sleep(0.02)
                common = ["--url", url, "--speed", "0", "--max-seconds", "4", "--reset-session"]
                relayed = await replay_edf.replay(replay_edf.parse_args([edf_path, *common]))
                analyzed = await replay_edf.replay(replay_edf.parse_args([edf_path, *common, "--mode", "analyze"]))
        return relayed, analyzed

    relayed, analyzed = run(scenario())
    for summary in (relayed, analyzed):
        assert summary.results == 8 and not summary.errors, summary.errors
        assert summary.last_result["window_full"] and summary.last_result["samples_received"] == 800


def test_main_writes_a_summary_and_exit_codes(edf_path, tmp_path):
    backend = EEGBackend("127.0.0.1", 0, settings=EEGSettings())
    thread = threading.Thread(target=lambda: asyncio.run(backend.serve()), daemon=True)
    thread.start()
    assert backend.ready_event.wait(10)
    try:
        out = tmp_path / "summary.json"
        url = f"ws://127.0.0.1:{backend.bound_port}"
        argv = [edf_path, "--url", url, "--direct", "--speed", "0", "--max-seconds", "3", "--summary-json", str(out)]
        deadline = time.monotonic() + 10
        while backend.status == "loading" and time.monotonic() < deadline:
            time.sleep(0.01)
        assert replay_edf.main(argv) == 0
        written = json.loads(out.read_text())
        assert written["sent"] == written["results"] == 6 and written["errors"] == []
        assert written["last_result"]["analyzed"] is True
    finally:
        backend.stop()
        thread.join(10)
    assert replay_edf.main([str(tmp_path / "missing.edf"), "--speed", "0"]) == 2
    assert replay_edf.main([str(out), "--speed", "0"]) == 2  # not an EDF/BDF file
    with pytest.raises(SystemExit):
        replay_edf.parse_args([edf_path, "--direct", "--mode", "analyze"])
