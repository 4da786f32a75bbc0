"""The two-hop floor for bench/peers.py: a bare `websockets` relay in front of the floor's echo server.

client -> this relay -> bench/peer_floor.py (echo) -> this relay -> client, the same process layout
as vigil (a relay process and a backend process). The relay does the least any multiplexing relay
must: it reads a client's frame, sends it on ONE shared upstream connection with a 4-byte header
naming the client connection, and routes each echoed frame back by that header. No JSON parsing, no
ids, no deadlines, no metrics, no admission. What it costs per request on this machine is what two
hops of Python `websockets` cost before any protocol work: the ceiling for vigil's relay.

--coalesce: the upstream frames of one event-loop turn leave in one socket write (vigil's
shared_protocol.outbox, the same technique vigil uses on its backend connections).

--batch (peer `relay-x`): about the least a two-hop relay of Python `websockets` can do, with every
transport technique vigil uses and none of its protocol work. Frames are taken from
`data_received` (shared_protocol.direct) on both sides; the client frames of one event-loop turn go
upstream as ONE frame (each with an 8-byte header: connection number, length), which the echo
server sends back whole, so the echo does one frame's work per turn, not one per request (less
than any backend can: vigil's backend admits and answers each message of a batch); the replies
leave through each client's coalescing outbox.

  python bench/peer_relay.py --port 9101 --upstream ws://127.0.0.1:9100 [--coalesce | --batch]
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
from shared_protocol.direct import DirectClientConnection, DirectServerConnection
from shared_protocol.eventloop import loop_factory
from shared_protocol.outbox import Outbox, outbox_for

HEADER = struct.Struct("!I")  # the client connection's number
MAX_SIZE = 16 * 1024 * 1024  # the echo server's frame limit too (bench/peer_floor.py)
BATCH_HEADER = struct.Struct("!II")  # --batch: the client connection's number, the message's length


class BatchRelay:
    """--batch: the client messages of one event-loop turn travel upstream as one frame."""

    def __init__(self, upstream: DirectClientConnection, clients: dict[int, ServerConnection]) -> None:
        self.upstream = outbox_for(upstream)
        self.clients = clients
        self.pending: list[bytes] = []
        self.loop = asyncio.get_running_loop()
        self.tasks: set[asyncio.Task] = set()

    def take(self, number: int, message: str | bytes) -> bool:
        data = message.encode() if type(message) is str else message
        if not self.pending:
            self.loop.call_soon(self.flush)
        self.pending.append(BATCH_HEADER.pack(number, len(data)) + data)
        return True

    def flush(self) -> None:
        frame, self.pending = b"".join(self.pending), []
        self._send(self.upstream, frame, text=False)

    def route_back(self, frame: str | bytes) -> bool:
        view, offset = memoryview(frame), 0
        while offset < len(view):
            number, length = BATCH_HEADER.unpack_from(view, offset)
            offset += BATCH_HEADER.size
            client = self.clients.get(number)
            if client is not None:
                self._send(outbox_for(client), bytes(view[offset : offset + length]), text=True)
            offset += length
        return True

    def _send(self, outbox: Outbox, message: bytes, *, text: bool) -> None:
        """Now, or by a task when the connection's write buffer is full (the library's flow control)."""
        if not outbox.send_nowait(message, text=text):
            task = self.loop.create_task(_send_unless_closed(outbox, message, text))
            self.tasks.add(task)
            task.add_done_callback(self.tasks.discard)


async def _send_unless_closed(outbox: Outbox, message: bytes, text: bool) -> None:
    with contextlib.suppress(ConnectionClosed):
        await outbox.send(message, text=text)


def stop_signal() -> asyncio.Future:
    """Done at SIGTERM or SIGINT."""
    loop = asyncio.get_running_loop()
    stop = loop.create_future()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set_result, None)
    return stop


async def main_batch(host: str, port: int, upstream_url: str) -> None:
    stop = stop_signal()
    clients: dict[int, ServerConnection] = {}
    numbers = itertools.count()
    async with connect(
        upstream_url, compression=None, max_size=MAX_SIZE, create_connection=DirectClientConnection
    ) as upstream:
        relay = BatchRelay(upstream, clients)
        upstream.on_message = relay.route_back

        async def route_queued() -> None:  # what direct delivery left to the library's queue
            async for frame in upstream:
                relay.route_back(frame)

        async def serve_client(websocket: DirectServerConnection) -> None:
            number = next(numbers)
            clients[number] = websocket
            websocket.on_message = lambda message: relay.take(number, message)
            try:
                async for message in websocket:
                    relay.take(number, message)
            finally:
                del clients[number]

        router = asyncio.create_task(route_queued())
        async with serve(
            serve_client,
            host,
            port,
            compression=None,
            max_size=MAX_SIZE,
            create_connection=DirectServerConnection,
        ):
            print(f"READY {port}", flush=True)
            await stop
        router.cancel()


async def main(host: str, port: int, upstream_url: str, coalesce: bool) -> None:
    stop = stop_signal()
    clients: dict[int, ServerConnection] = {}
    numbers = itertools.count()
    async with connect(upstream_url, compression=None, max_size=MAX_SIZE) as upstream:
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
        async with serve(relay, host, port, compression=None, max_size=MAX_SIZE):
            print(f"READY {port}", flush=True)
            await stop
        router.cancel()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--upstream", required=True, help="the echo server's ws:// URL")
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--coalesce", action="store_true", help="one socket write per loop turn upstream")
    mode.add_argument("--batch", action="store_true", help="one upstream frame per loop turn, direct delivery")
    args = parser.parse_args()
    with asyncio.Runner(loop_factory=loop_factory()) as runner:
        if args.batch:
            runner.run(main_batch(args.host, args.port, args.upstream))
        else:
            runner.run(main(args.host, args.port, args.upstream, args.coalesce))
