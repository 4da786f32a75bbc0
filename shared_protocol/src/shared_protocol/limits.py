"""Default limits shared by servers and clients (documented in one place)."""

MiB = 1024 * 1024
DEFAULT_MAX_MESSAGE_SIZE = 16 * MiB  # base64 camera frames are large; oversize closes with 1009
DEFAULT_REQUEST_TIMEOUT = 30.0  # seconds, the seed's request_timeout
DEFAULT_MAX_CONCURRENCY = 1  # model calls at once; 1 keeps per-session frames in arrival order
DEFAULT_MAX_QUEUE = 64  # requests waiting for a worker before `overloaded`
DEFAULT_GRACE_PERIOD = 10.0  # seconds to finish in-flight work on SIGTERM
DEFAULT_PING_INTERVAL = 20.0
DEFAULT_PING_TIMEOUT = 20.0
