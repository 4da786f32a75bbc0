"""Where the replicas of one model backend are: an explicit list, or every address of a DNS name.

One DNS name standing for many replicas is how orchestrators publish a scaled service:
`docker compose up --scale eeg=3` (Docker's embedded DNS answers one A record per container),
Swarm's `tasks.<service>` (or a service with `endpoint_mode: dnsrr`), a Kubernetes headless
Service (one record per ready pod). Each address becomes one replica.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from dataclasses import dataclass


@dataclass(frozen=True, slots=True, order=True)
class Endpoint:
    host: str  # an IP address (discovered) or the name as configured (explicit list)
    port: int

    @property
    def id(self) -> str:
        """Stable replica id: the key rendezvous hashing uses."""
        return f"{_bracketed(self.host)}:{self.port}"

    @property
    def url(self) -> str:
        return f"ws://{self.id}"


def _bracketed(host: str) -> str:
    return f"[{host}]" if ":" in host else host


def parse_endpoint(text: str, default_port: int) -> Endpoint:
    """'host', 'host:port', '[v6]:port' or 'ws://host:port' -> Endpoint; ValueError says what is wrong."""
    if not isinstance(text, str) or not text.strip():
        raise ValueError(f"endpoint must be a non-empty 'host:port' string, got {text!r}")
    rest = text.strip()
    if rest.startswith("ws://"):
        rest = rest[len("ws://") :].rstrip("/")
    if "/" in rest or "://" in rest:
        raise ValueError(f"endpoint {text!r}: expected 'host:port' (or ws://host:port without a path)")
    if rest.startswith("["):
        host, bracket, tail = rest[1:].partition("]")
        if not bracket or (tail and not tail.startswith(":")):
            raise ValueError(f"endpoint {text!r}: unbalanced '[' in an IPv6 address")
        port_text = tail[1:] if tail else ""
    elif rest.count(":") == 1:
        host, _, port_text = rest.partition(":")
    elif ":" in rest:  # a bare IPv6 address without a port
        host, port_text = rest, ""
    else:
        host, port_text = rest, ""
    if not host:
        raise ValueError(f"endpoint {text!r} has no host")
    if port_text:
        if not port_text.isdigit() or not 1 <= int(port_text) <= 65535:
            raise ValueError(f"endpoint {text!r}: port must be 1-65535")
        port = int(port_text)
    else:
        port = default_port
    return Endpoint(host, port)


def is_ip_address(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


async def resolve(host: str, port: int) -> list[Endpoint]:
    """Every address of `host` as one replica (sorted, no duplicates).

    IPv4 records win when a name has both: a dual-stack pod (or `localhost`) answers on both
    families, and counting it twice would split its sessions over two connections to one process.
    Raises OSError (socket.gaierror) when the name does not resolve.
    """
    if is_ip_address(host):
        return [Endpoint(host, port)]
    infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    by_family: dict[int, set[str]] = {}
    for family, _type, _proto, _canon, sockaddr in infos:
        if family in (socket.AF_INET, socket.AF_INET6):
            by_family.setdefault(family, set()).add(str(sockaddr[0]))
    addresses = by_family.get(socket.AF_INET) or by_family.get(socket.AF_INET6) or set()
    return sorted(Endpoint(address, port) for address in addresses)
