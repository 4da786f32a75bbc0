"""vigil shared protocol: messages, BaseModelBackend (server) and BackendClient (main backend side).

Pure Python on `websockets` + stdlib; `shared_protocol.images` additionally needs numpy + OpenCV.
"""

from .backend import HEALTHY, LOADING, UNHEALTHY, BaseModelBackend, ModelInitializationError
from .client import BackendClient, Reply
from .errors import BadRequestError, ErrorCode, ProtocolError

__all__ = [
    "BaseModelBackend",
    "BackendClient",
    "BadRequestError",
    "ErrorCode",
    "HEALTHY",
    "LOADING",
    "ModelInitializationError",
    "ProtocolError",
    "Reply",
    "UNHEALTHY",
]
__version__ = "0.1.0"
