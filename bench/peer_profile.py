"""Summarise a py-spy raw (collapsed-stack) profile: where a vigil process spends its time.

Input: `py-spy record --format raw --threads --nolineno` output, one "frame;frame;... count" line
per distinct stack (root first). Idle samples are not recorded by py-spy, so percentages are of the
time the process was running Python. bench/peers.py --profile writes these and prints the summary;
alone:

  python bench/peer_profile.py /tmp/prof/gateway.collapsed [--top 15]

Categories are decided by the innermost frame ("self" time: what was executing). C extensions
(msgspec, uvloop) have no frames of their own, so their time is charged to the Python function
that called them: a msgspec decode shows as shared_protocol/messages.py, a uvloop socket write as
the websockets or asyncio frame that called it. "in stack" counts a sample once when any frame of
the category is on the stack (inclusive: logging.info that formats and writes, metrics .labels()).
"""

from __future__ import annotations

import argparse
import re
from collections import Counter
from pathlib import Path

# (category, regex on "function (file)"), first match wins; order puts the specific before the generic.
CATEGORIES: list[tuple[str, re.Pattern[str]]] = [
    (name, re.compile(pattern))
    for name, pattern in [
        ("metrics (prometheus_client, vigil_main/metrics)", r"prometheus_client/|vigil_main/metrics\.py"),
        ("logging", r"/logging/|shared_protocol/logs\.py"),
        ("codec (msgspec/json, shared_protocol/messages)", r"shared_protocol/messages\.py|/json/|msgspec"),
        ("BackendClient / replicas (request ids, futures)", r"shared_protocol/client\.py|vigil_main/replicas\.py"),
        ("websockets (framing, protocol, send/recv)", r"/websockets/"),
        ("server core (shared_protocol/server)", r"shared_protocol/server\.py"),
        ("gateway handler (vigil_main/gateway)", r"vigil_main/gateway\.py"),
        ("backend core (backend/threads/batching)", r"shared_protocol/(backend|threads|batching|sessions|fields)\.py"),
        ("model code (controlled_backend)", r"controlled_backend\.py"),
        ("threads / futures (stdlib)", r"/threading\.py|/concurrent/futures/|/queue\.py"),
        ("asyncio (tasks, futures, loop, streams)", r"/asyncio/|uvloop"),
    ]
]
OTHER = "other"


def parse(lines: list[str]) -> list[tuple[str, list[str], int]]:
    """(thread, frames root-first, samples) per line."""
    stacks = []
    for line in lines:
        line = line.strip()
        if not line:
            continue
        text, _, count = line.rpartition(" ")
        if not count.isdigit():
            continue
        frames = text.split(";")
        thread = "?"
        if frames and frames[0].startswith("thread ("):
            thread = frames.pop(0)
        if frames and frames[0].startswith("process "):
            frames.pop(0)
        stacks.append((thread, frames, int(count)))
    return stacks


def category(frame: str) -> str:
    for name, pattern in CATEGORIES:
        if pattern.search(frame):
            return name
    return OTHER


def short(frame: str) -> str:
    """'send (/x/site-packages/websockets/asyncio/connection.py)' -> 'send (websockets/asyncio/connection.py)'"""
    m = re.match(r"(.*) \((.*)\)$", frame)
    if not m:
        return frame
    func, path = m.groups()
    for marker in ("site-packages/", "/lib/python3.", "/src/", "/services/", "/tests/"):
        if marker in path:
            path = path.split(marker, 1)[1]
            if marker == "/lib/python3.":
                path = "stdlib " + path.split("/", 1)[-1]
            break
    return f"{func} ({path})"


def summarize(lines: list[str], top: int = 15) -> str:
    stacks = parse(lines)
    total = sum(n for _, _, n in stacks)
    if not total:
        return "no samples"
    self_cat: Counter[str] = Counter()
    incl_cat: Counter[str] = Counter()
    self_fn: Counter[str] = Counter()
    incl_fn: Counter[str] = Counter()
    threads: Counter[str] = Counter()
    for thread, frames, n in stacks:
        threads[re.sub(r"\(0x[0-9a-f]+\)\s*", "", thread).strip() or "?"] += n
        leaf = frames[-1] if frames else "?"
        self_cat[category(leaf)] += n
        self_fn[short(leaf)] += n
        for name in {category(f) for f in frames}:
            incl_cat[name] += n
        for fn in {short(f) for f in frames}:
            incl_fn[fn] += n

    def pct(n: int) -> str:
        return f"{100 * n / total:5.1f}%"

    out = [f"{total} samples (non-idle)"]
    out.append("threads: " + ", ".join(f"{name} {pct(n).strip()}" for name, n in threads.most_common()))
    out.append(f"{'category':<52} {'self':>6} {'in stack':>9}")
    for name, n in self_cat.most_common():
        out.append(f"{name:<52} {pct(n)} {pct(incl_cat[name]):>9}")
    out.append(f"top {top} functions by self time:")
    out += [f"  {pct(n)}  {fn}" for fn, n in self_fn.most_common(top)]
    out.append(f"top {top} functions by inclusive time (excluding the loop's own run frames):")
    skip = re.compile(
        r"^(run|run_forever|run_until_complete|_run_once|_run|<module>|main|_bootstrap\w*|run_event_loop)\b"
    )
    ranked = [(fn, n) for fn, n in incl_fn.most_common() if not skip.match(fn)]
    out += [f"  {pct(n)}  {fn}" for fn, n in ranked[:top]]
    return "\n".join(out)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("path", type=Path)
    parser.add_argument("--top", type=int, default=15)
    args = parser.parse_args()
    print(summarize(args.path.read_text().splitlines(), args.top))
