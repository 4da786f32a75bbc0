"""The floor for bench/peers.py: a bare `websockets` echo server (one hop, no protocol work).

Every frame comes back unchanged, so the client does the same encode/decode as against vigil and
the server does only what any Python WebSocket server must: framing and the event loop. It runs on
uvloop when installed, like the gateway (VIGIL_UVLOOP=0 turns it off for both).

  python bench/peer_floor.py --port 9100
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
from pathlib import Path

from websockets.asyncio.server import ServerConnection, serve

# The same event loop choice as vigil's servers (uvloop unless VIGIL_UVLOOP=0), so the floor differs
# from them only in the protocol work.
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "shared_protocol" / "src"))
from shared_protocol.eventloop import loop_factory


async def echo(websocket: ServerConnection) -> None:
    async for frame in websocket:
        await websocket.send(frame)


async def main(host: str, port: int) -> None:
    stop = asyncio.get_running_loop().create_future()
    for sig in (signal.SIGTERM, signal.SIGINT):
        asyncio.get_running_loop().add_signal_handler(sig, stop.set_result, None)
    # Same framing settings as the vigil server core: no compression, no frame size limit that matters.
    async with serve(echo, host, port, compression=None, max_size=16 * 1024 * 1024):
        print(f"READY {port}", flush=True)
        await stop


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    with asyncio.Runner(loop_factory=loop_factory()) as runner:
        runner.run(main(args.host, args.port))
