"""The two-hop floor for bench/peers.py: a bare `websockets` relay in front of the floor's echo server.

client -> this relay -> bench/peer_floor.py (echo) -> this relay -> client, the same process layout
as vigil (a relay process and a backend process). The relay does the least any multiplexing relay
must: it reads a client's frame, sends it on ONE shared upstream connection with a 4-byte header
naming the client connection, and routes each echoed frame back by that header. No JSON parsing, no
ids, no deadlines, no metrics, no admission. What it costs per request on this machine is what two
hops of Python `websockets` cost before any protocol work: the ceiling for vigil's relay.

--coalesce: the upstream frames of one event-loop turn leave in one socket write (vigil's
shared_protocol.outbox, the same technique vigil uses on its backend connections).

  python bench/peer_relay.py --port 9101 --upstream ws://127.0.0.1:9100 [--coalesce]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import signal
import struct
import sys
from pathlib import Path

from websockets.asyncio.client import connect
from websockets.asyncio.server import ServerConnection, serve
from websockets.exceptions import ConnectionClosed

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "shared_protocol" / "src"))
from shared_protocol.eventloop import loop_factory
from shared_protocol.outbox import outbox_for

HEADER = struct.Struct("!I")  # the client connection's number


async def main(host: str, port: int, upstream_url: str, coalesce: bool) -> None:
    loop = asyncio.get_running_loop()
    stop = loop.create_future()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set_result, None)
    clients: dict[int, ServerConnection] = {}
    numbers = itertools.count()
    async with connect(upstream_url, compression=None, max_size=16 * 1024 * 1024) as upstream:
        upstream_outbox = outbox_for(upstream) if coalesce else None

        async def route_back() -> None:
            async for frame in upstream:
                client = clients.get(HEADER.unpack_from(frame)[0])
                if client is not None:
                    with contextlib.suppress(ConnectionClosed):
                        await client.send(frame[HEADER.size :], text=True)

        async def relay(websocket: ServerConnection) -> None:
            number = next(numbers)
            header = HEADER.pack(number)
            clients[number] = websocket
            try:
                while True:
                    frame = header + await websocket.recv(decode=False)
                    if upstream_outbox is not None:
                        await upstream_outbox.send(frame, text=False)
                    else:
                        await upstream.send(frame, text=False)
            except ConnectionClosed:
                pass
            finally:
                del clients[number]

        router = asyncio.create_task(route_back())
        async with serve(relay, host, port, compression=None, max_size=16 * 1024 * 1024):
            print(f"READY {port}", flush=True)
            await stop
        router.cancel()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--upstream", required=True, help="the echo server's ws:// URL")
    parser.add_argument("--coalesce", action="store_true", help="one socket write per loop turn upstream")
    args = parser.parse_args()
    with asyncio.Runner(loop_factory=loop_factory()) as runner:
        runner.run(main(args.host, args.port, args.upstream, args.coalesce))
