"""Shared-secret authentication at the WebSocket handshake.

A client presents `Authorization: Bearer <token>`, or (browsers cannot set headers on a WebSocket)
a `token` query parameter. Tokens are compared in constant time against every configured token.
A client's identity is a digest of its token, so an authenticated client keeps its sessions across
reconnects while the token itself is never logged or used as a key.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterable
from urllib.parse import parse_qs, urlsplit

from websockets.datastructures import Headers

TOKEN_QUERY_PARAMETER = "token"


def parse_tokens(value: str | Iterable[str] | None) -> tuple[str, ...]:
    """Tokens from a comma-separated string (VIGIL_API_TOKENS) or a list; blanks dropped."""
    if value is None:
        return ()
    items = value.split(",") if isinstance(value, str) else list(value)
    return tuple(token.strip() for token in items if token and token.strip())


class TokenAuth:
    def __init__(self, tokens: Iterable[str] = ()) -> None:
        self._tokens = tuple(token.encode("utf-8") for token in parse_tokens(list(tokens)))

    @property
    def enabled(self) -> bool:
        return bool(self._tokens)

    def identity(self, path: str, headers: Headers) -> str | None:
        """`token-<digest>` for a valid token, None for a missing or wrong one."""
        presented = presented_token(path, headers)
        if presented is None:
            return None
        candidate = presented.encode("utf-8", "surrogatepass")
        matched = False
        for token in self._tokens:  # no early exit: the time taken does not say which token matched
            matched |= hmac.compare_digest(candidate, token)
        if not matched:
            return None
        return "token-" + hashlib.sha256(candidate).hexdigest()[:16]


def presented_token(path: str, headers: Headers) -> str | None:
    authorization = headers.get("Authorization")
    if authorization:
        scheme, _, credentials = authorization.partition(" ")
        if scheme.lower() == "bearer" and credentials.strip():
            return credentials.strip()
        return None
    values = parse_qs(urlsplit(path).query).get(TOKEN_QUERY_PARAMETER)
    return values[0] if values else None
