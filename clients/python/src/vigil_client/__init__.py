"""Python client for the vigil main backend: `async with VigilClient(url) as c: await c.analyze(...)`."""

from .client import AnalyzeResult, VigilClient
from .errors import (
    BadRequest,
    Internal,
    Overloaded,
    ProtocolViolation,
    Timeout,
    Unauthorized,
    Unavailable,
    VigilError,
)
from .media import Recording, read_edf

__all__ = [
    "AnalyzeResult",
    "BadRequest",
    "Internal",
    "Overloaded",
    "ProtocolViolation",
    "Recording",
    "Timeout",
    "Unauthorized",
    "Unavailable",
    "VigilClient",
    "VigilError",
    "read_edf",
]
__version__ = "0.1.0"
