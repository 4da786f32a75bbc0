"""The stripped chain: vigil's two processes with their per-request guarantees and layers removed.

An experiment for bench/peers.py's `vigil-strip` peer, never a mode of the product. It answers one
question for issue 14: how fast could the gateway -> backend chain be with the same process layout,
the same transport (direct delivery, coalesced and batch frames) and the same codec, if it did only
the least a JSON relay must do? Every envelope is still parsed and checked by msgspec in both
processes, the backend still decodes `data` and checks its values, and every frame is framed. Gone:

- admission and byte budgets (per connection and per server), in both processes;
- deadlines (a request whose backend never answers waits for ever), session routing, replica
  choice and health, the swap gate around the model, error counting;
- metrics, timing fields and the callback layers between a frame and its reply.

So it is an upper bound on what dropping those would buy, not a design to ship: a hostile client
could grow its memory without bound.

    python bench/stripped_chain.py gateway services/main_backend/main.py ARGS...
    python bench/stripped_chain.py backend tests/support/controlled_backend.py ARGS...

patches the named process's classes, then runs the script as `__main__` with ARGS. It reaches into
private members of the classes it patches (`ReplicaPool._replicas`, `BackendClient._pending`, ...):
when they change, the peer's replies fail bench/peers.py's per-reply check and show as errors.
"""

from __future__ import annotations

import runpy
import sys
from pathlib import Path

import msgspec

_ENCODER = msgspec.json.Encoder()


def strip_server_core() -> None:
    """Frames straight to the handler: no admission, no byte budgets, no in-flight accounting."""
    from shared_protocol import messages
    from shared_protocol.batches import split_batch
    from shared_protocol.outbox import outbox_for
    from shared_protocol.server import ProtocolServer

    def take_frame(self, peer, frame):
        outbox = outbox_for(peer.websocket)
        batch = split_batch(frame) if peer.batch and type(frame) is bytes else (frame,)
        for one in batch:
            msg = messages.parse_envelope(one, self.handler.allowed_types, binary=peer.binary)
            if msg.type != messages.INFERENCE_REQUEST:  # health checks: the server core's own way
                self._reply_now(peer, self.handler.control_reply(peer, msg), msg.codec, 0)
                peer.in_flight += 1
                self.in_flight += 1
            elif self._answer_now is not None:
                self.handler._admitted += 1
                outbox.send_nowait(_ENCODER.encode(self._answer_now(peer, msg)), text=True)
            else:

                def respond(reply, outbox=outbox):
                    outbox.send_nowait(reply if type(reply) is bytes else _ENCODER.encode(reply), text=True)

                self._answer_later(peer, msg, respond)
        return True

    ProtocolServer._take_frame = take_frame


def strip_gateway() -> None:
    """The first replica of the named backend, no deadline, no session route, no metrics."""
    from shared_protocol import Reply, messages
    from shared_protocol.client import BackendClient
    from shared_protocol.outbox import outbox_for
    from vigil_main_backend.gateway import MainBackend

    def answer_later(self, peer, msg, respond):
        if msg.type != messages.INFERENCE_REQUEST:
            return False
        client = next(iter(self.clients[msg.model]._replicas.values())).client
        trace_id = msg.trace_id or self._new_trace_id()
        request_id = f"{client._prefix}-{next(client._ids)}"
        frame = _ENCODER.encode(
            messages.inference_request(request_id, msg.data_raw, session_owner=peer.owner, trace_id=trace_id)
        )

        def on_reply(reply):
            envelope = messages.inference_response(
                msg.request_id,
                reply.data_raw,
                trace_id=trace_id,
                model=msg.model,
                timing=reply.timing,
                model_version=reply.model_version,
            )
            respond(messages.encode_members(envelope))

        client._pending[request_id] = (on_reply, 0.0, 0.0)
        outbox_for(client._connection).send_nowait(frame, text=True)
        return True

    def on_reply(self, frame):
        reply = messages.parse_reply_envelope(frame)
        if reply.type == messages.PONG:
            return self._on_pong(frame)
        callback = self._pending.pop(reply.request_id)[0]
        callback(Reply(True, data_raw=reply.data, timing=reply.timing, model_version=reply.model_version))

    MainBackend.answer_later = answer_later
    BackendClient._on_reply = on_reply
    strip_server_core()


def strip_backend() -> None:
    """The model called at once on the event loop: no swap gate, no timing, no session check."""
    from shared_protocol import messages
    from shared_protocol.backend import BaseModelBackend

    def answer_now(self, peer, msg):
        result = self.process_inference(messages.decode_data(msg.data_raw))
        self._admitted -= 1
        return messages.inference_response(msg.request_id, result, model_version="stripped", trace_id=msg.trace_id)

    BaseModelBackend.answer_now = answer_now
    strip_server_core()


def main(argv: list[str]) -> None:
    if len(argv) < 2 or argv[0] not in ("gateway", "backend"):
        raise SystemExit("usage: stripped_chain.py gateway|backend SCRIPT [ARGS...]")
    role, script = argv[0], Path(argv[1]).resolve()
    sys.path.insert(0, str(script.parent))  # as if the script were run directly
    (strip_gateway if role == "gateway" else strip_backend)()
    sys.argv = [str(script), *argv[2:]]
    runpy.run_path(str(script), run_name="__main__")


if __name__ == "__main__":
    main(sys.argv[1:])
