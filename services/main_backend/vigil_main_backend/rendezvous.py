"""Rendezvous (highest-random-weight) hashing: which replica owns a session.

Each (session, replica) pair gets a pseudo-random score; the session's owner is the replica with
the highest score among those available. Adding a replica moves only the sessions it now wins
(about 1/N of them); losing one moves only the sessions it owned. No ring, no virtual nodes, no
shared state between gateways: every gateway computes the same owner from the same replica set.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable


def score(session_key: str, replica_id: str) -> int:
    """A stable 64-bit weight of the pair (blake2b: the same in every process, unlike hash())."""
    digest = hashlib.blake2b(
        replica_id.encode("utf-8", "surrogatepass") + b"\x00" + session_key.encode("utf-8", "surrogatepass"),
        digest_size=8,
    ).digest()
    return int.from_bytes(digest, "big")


def owner(session_key: str, replica_ids: Iterable[str]) -> str | None:
    """The replica that owns `session_key` among `replica_ids` (None when there is none).

    Ties (astronomically unlikely with 64-bit scores) go to the larger id, so the choice never
    depends on iteration order.
    """
    best: tuple[int, str] | None = None
    for replica_id in replica_ids:
        candidate = (score(session_key, replica_id), replica_id)
        if best is None or candidate > best:
            best = candidate
    return None if best is None else best[1]
