"""bench/peer_relay.py, the two-hop floor of bench/peers.py, relays correctly: a relay that lost or
misrouted frames would make the floor it sets look better than it is."""

from __future__ import annotations

import asyncio
import json
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


@pytest.mark.parametrize("mode", [None, "--coalesce", "--batch"], ids=["plain", "coalesced", "batched"])
def test_each_client_gets_exactly_its_own_frames_back(mode):
    echo_port, relay_port = free_port(), free_port()
    echo = start("peer_floor.py", "--port", str(echo_port))
    relay = None
    try:
        args = ["--port", str(relay_port), "--upstream", f"ws://127.0.0.1:{echo_port}"]
        relay = start("peer_relay.py", *args, *([mode] if mode else []))

        async def client(name: str) -> list[str]:
            async with connect(f"ws://127.0.0.1:{relay_port}", open_timeout=5) as ws:
                for i in range(30):  # pipelined: many frames of many clients share the upstream
                    await ws.send(f'{{"who":"{name}","i":{i}}}')
                return [await asyncio.wait_for(ws.recv(), 10) for _ in range(30)]

        async def scenario():
            names = [f"c{k}\u00e9" for k in range(4)]  # not ASCII: lengths in bytes, not characters
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


def test_peers_bench_splits_the_load_and_runs_a_multi_process_gateway(tmp_path):
    """bench/peers.py --load-procs 2 --rounds 2 with the vigil-w peer: every connection's requests
    are counted once (the shares of the load processes add up, the rounds' counts too), each reply
    is checked (a wrong one counts as an error), and the CPU columns name the peer's processes and
    the load processes together."""
    out = tmp_path / "peers.json"
    proc = subprocess.run(
        [sys.executable, str(BENCH / "peers.py"), "--peers", "floor", "vigil-w", "--gateway-workers", "2"]
        + ["--load-procs", "2", "--rounds", "2", "--concurrency", "1", "5", "--requests", "20", "--warmup", "5"]
        + ["--json", str(out)],
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    record = json.loads(out.read_text())
    assert [len(cells) for cells in record["rounds"]] == [4, 4]
    assert [c["peer"] for c in record["rounds"][1]][::2] == ["vigil-w2", "floor"]  # the order rotated
    cells = {(c["peer"], c["conc"]): c for c in record["cells"]}
    assert set(cells) == {("floor", 1), ("floor", 5), ("vigil-w2", 1), ("vigil-w2", 5)}
    for (peer, conc), cell in cells.items():
        assert cell["count"] == 2 * conc * 20 and cell["errors"] == 0, (peer, conc, cell)
        # CPU is read in clock ticks (10 ms): a cell this short may read 0, never less.
        assert all(ms >= 0 for ms in cell["cpu_ms"].values())
    assert set(cells["floor", 5]["cpu_ms"]) == {"server", "client"}
    assert set(cells["vigil-w2", 5]["cpu_ms"]) == {"gateway", "backend", "client"}
    assert "vigil-w2 conc 5 req/s / floor" in proc.stdout and "median of 2 rounds" in proc.stdout


def test_a_failed_load_process_fails_the_cell_with_its_reason():
    """A load process that cannot connect stops the others at the start barrier, and the cell fails
    saying why (no hang until the timeouts)."""
    sys.path.insert(0, str(BENCH))
    try:
        import peers
    finally:
        sys.path.remove(str(BENCH))
    cell_args = (f"ws://127.0.0.1:{free_port()}", None, "inference_request", 4, 1.0, None, 10, 2)
    with pytest.raises(RuntimeError, match="failed before the cell started: .*ConnectionRefusedError"):
        peers.run_in_load_procs(cell_args, {}, 2)


def test_peers_bench_runs_the_stripped_chain_beside_vigil(tmp_path):
    """bench/peers.py's vigil-strip peer (bench/stripped_chain.py patches private members of the
    gateway and the backend): it still answers every request with its own reply, so a refactor that
    breaks the patches shows here, not as a silently wrong upper bound."""
    out = tmp_path / "peers.json"
    proc = subprocess.run(
        [sys.executable, str(BENCH / "peers.py"), "--peers", "floor", "vigil", "vigil-strip"]
        + ["--concurrency", "1", "4", "--requests", "20", "--warmup", "5", "--json", str(out)],
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    cells = {(c["peer"], c["conc"]): c for c in json.loads(out.read_text())["cells"]}
    for conc in (1, 4):
        cell = cells["vigil-strip", conc]
        assert cell["count"] == conc * 20 and cell["errors"] == 0, cell
        assert set(cell["cpu_ms"]) == {"gateway", "backend", "client"}
    assert "vigil-strip conc 4 req/s / floor" in proc.stdout
    assert "vigil / vigil-strip at conc 4" in proc.stdout


def test_the_stripped_chain_refuses_an_unknown_role():
    proc = subprocess.run(
        [sys.executable, str(BENCH / "stripped_chain.py"), "proxy", "main.py"], capture_output=True, text=True
    )
    assert proc.returncode != 0 and "usage: stripped_chain.py gateway|backend" in proc.stderr
