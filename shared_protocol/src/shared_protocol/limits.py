"""Every limit a vigil server enforces, with its default, in one place.

Like websockets' `max_size`/`max_queue`, each bounds memory or work that a peer could otherwise
grow without end. Limits count bytes where bytes are what grows, not only requests: a request is
charged `request_charge(frame)` bytes from the moment it is admitted until its reply is sent.
Over a budget the request is answered `overloaded` at once.
"""

MiB = 1024 * 1024

# ---- frames ------------------------------------------------------------------------------------
DEFAULT_MAX_MESSAGE_SIZE = 16 * MiB  # bytes per frame; base64 camera frames are large; oversize closes with 1009
# Frames websockets buffers per connection before it stops reading the socket (its own default is 16,
# i.e. up to 16 x max_message_size per connection). Our read loop takes each frame at once (admits or
# refuses it), so one is enough: a connection then holds at most ~3 frames (one queued, one being
# received, one being admitted), and a server needs about
#   max_pending_bytes + busy connections x 3 x max_message_size
# of memory for frames; docs/security.md has the sizing.
DEFAULT_WS_MAX_QUEUE = 1
MAX_NESTING = 32  # levels of arrays/objects inside a request's `data`

# ---- connections -------------------------------------------------------------------------------
DEFAULT_MAX_CONNECTIONS = 256  # open WebSocket connections per process; more get HTTP 503 at the handshake
DEFAULT_MAX_IN_FLIGHT_PER_CONNECTION = 64  # requests admitted and not yet answered, per client connection
# A model backend's peer is the main backend, which multiplexes every client on one connection per
# replica: its cap per connection matches what the main backend keeps in flight per replica.
DEFAULT_BACKEND_MAX_IN_FLIGHT_PER_CONNECTION = 256

# ---- byte budgets (bytes charged by admitted, unanswered requests) -----------------------------
DEFAULT_MAX_PENDING_BYTES_PER_CONNECTION = 64 * MiB
DEFAULT_MAX_PENDING_BYTES = 256 * MiB  # per process (the main backend: it never decodes `data`)
# A model backend decodes every admitted request: its budget, in decoded bytes, is what it may hold
# at once on top of the model (a 1 GiB container stays safe with frames in flight, docs/security.md).
DEFAULT_BACKEND_MAX_PENDING_BYTES = 128 * MiB
# Decoded JSON costs more than its text: each array element or member becomes a Python object
# (a float is 24 bytes plus an 8-byte slot for "1.5," = 4 bytes of text). A request is charged its
# frame's bytes plus this much per separator, so number-heavy frames weigh what they will cost.
BYTES_PER_JSON_ELEMENT = 32

# ---- work --------------------------------------------------------------------------------------
DEFAULT_REQUEST_TIMEOUT = 30.0  # seconds, the seed's request_timeout
DEFAULT_MAX_CONCURRENCY = 1  # model calls at once; 1 keeps per-session frames in arrival order
DEFAULT_MAX_QUEUE = 64  # requests waiting for a worker before `overloaded`
DEFAULT_GRACE_PERIOD = 10.0  # seconds to finish in-flight work on SIGTERM
DEFAULT_PING_INTERVAL = 20.0
DEFAULT_PING_TIMEOUT = 20.0


def request_charge(frame: str | bytes) -> int:
    """Bytes a request may cost in memory once decoded, estimated from its text without decoding."""
    separators = frame.count(",") if isinstance(frame, str) else frame.count(b",")
    return len(frame) + BYTES_PER_JSON_ELEMENT * separators
