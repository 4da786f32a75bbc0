"""bench/peer_relay.py, the two-hop floor of bench/peers.py, relays correctly: a relay that lost or
misrouted frames would make the floor it sets look better than it is."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path

import pytest
from websockets.asyncio.client import connect

from support.net import free_port

BENCH = Path(__file__).resolve().parents[2] / "bench"


def start(script: str, *args: str) -> subprocess.Popen:
    proc = subprocess.Popen([sys.executable, str(BENCH / script), *args], stdout=subprocess.PIPE, text=True)
    line = proc.stdout.readline()
    assert line.startswith("READY"), line
    return proc


@pytest.mark.parametrize("coalesce", [False, True], ids=["plain", "coalesced"])
def test_each_client_gets_exactly_its_own_frames_back(coalesce):
    echo_port, relay_port = free_port(), free_port()
    echo = start("peer_floor.py", "--port", str(echo_port))
    relay = None
    try:
        args = ["--port", str(relay_port), "--upstream", f"ws://127.0.0.1:{echo_port}"]
        relay = start("peer_relay.py", *args, *(["--coalesce"] if coalesce else []))

        async def client(name: str) -> list[str]:
            async with connect(f"ws://127.0.0.1:{relay_port}", open_timeout=5) as ws:
                for i in range(30):  # pipelined: many frames of many clients share the upstream
                    await ws.send(f'{{"who":"{name}","i":{i}}}')
                return [await asyncio.wait_for(ws.recv(), 10) for _ in range(30)]

        async def scenario():
            names = [f"c{k}" for k in range(4)]
            got = await asyncio.gather(*(client(n) for n in names))
            for name, frames in zip(names, got, strict=True):
                assert frames == [f'{{"who":"{name}","i":{i}}}' for i in range(30)]

        asyncio.run(asyncio.wait_for(scenario(), 30))
    finally:
        for proc in (relay, echo):
            if proc is not None:
                proc.terminate()
                proc.wait(10)


def test_the_in_process_relay_bench_runs_and_checks_every_reply():
    """bench/relay_inprocess.py: each configuration answers every request (it raises on any other
    reply) and prints a figure per row."""
    proc = subprocess.run(
        [sys.executable, str(BENCH / "relay_inprocess.py"), "--concurrency", "2", "--requests", "30", "--rounds", "1"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    rows = [line.split() for line in proc.stdout.splitlines() if line.split()[:1] in (["on"], ["off"])]
    assert [row[0] for row in rows] == ["on", "off", "on", "off"]
    assert all(float(value) > 0 for row in rows for value in row[1:])
    assert "metrics per request" in proc.stdout
