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


def _in(*paths: str) -> str:
    """A frame whose file is one of `paths` (py-spy prints paths relative to site-packages/stdlib)."""
    return r"\((?:[^)]*/)?(?:" + "|".join(paths) + r")"


# The event loop's own frame as the innermost Python frame: the sample was in C under it (uvloop's
# polling, socket reads/writes it does itself, callback dispatch, C Task steps) or the process was
# runnable but waiting for a CPU (py-spy counts a runnable thread as active).
LOOP_INTERNALS = "event loop internals (uvloop/C Task steps; or runnable, waiting for a CPU)"
LOOP_FRAME = re.compile(r"^(Runner\.run|run_until_complete|run_forever|BaseEventLoop\.\w+) \(asyncio/")

# (category, regex on "function (file)"), first match wins; order puts the specific before the generic.
CATEGORIES: list[tuple[str, re.Pattern[str]]] = [
    (name, re.compile(pattern))
    for name, pattern in [
        (
            "metrics (prometheus_client, vigil_main_backend/metrics)",
            _in("prometheus_client/", "vigil_main_backend/metrics\\.py"),
        ),
        ("logging", _in("logging/", "shared_protocol/logs\\.py")),
        ("codec (msgspec/json, shared_protocol/messages)", _in("shared_protocol/messages\\.py", "json/")),
        (
            "BackendClient / replicas (ids, futures)",
            _in("shared_protocol/client\\.py", "vigil_main_backend/replicas\\.py"),
        ),
        ("websockets (framing, protocol, send/recv)", _in("websockets/")),
        ("server core (shared_protocol/server)", _in("shared_protocol/server\\.py")),
        ("gateway handler (vigil_main_backend/gateway)", _in("vigil_main_backend/gateway\\.py")),
        (
            "backend core (backend/threads/batching)",
            _in("shared_protocol/(?:backend|threads|batching|sessions|fields)\\.py"),
        ),
        ("model code (controlled_backend)", _in("controlled_backend\\.py")),
        (
            "thread pool hand-off (concurrent.futures, threading)",
            _in("threading\\.py", "concurrent/futures/", "queue\\.py"),
        ),
        ("asyncio (tasks, futures, locks, wait_for)", _in("asyncio/")),
        (
            "uuid / contextlib / enum / inspect (stdlib)",
            _in("uuid\\.py", "contextlib\\.py", "enum\\.py", "inspect\\.py"),
        ),
    ]
]
OTHER = "other"

# With --native, samples in a blocking wait are recorded too (py-spy's idle test does not see them):
# they are set apart as idle, and the percentages are of the busy samples.
IDLE = re.compile(r"^(epoll_p?wait|poll|ppoll|select|pselect6?) \(|SimpleQueue_get|PyThread_acquire_lock_timed")
GIL_WAIT = "waiting for the GIL / a lock (pthread_cond_timedwait)"
# Native leaf frames worth their own line: each is a syscall made per frame or per request.
SYSCALLS: list[tuple[str, re.Pattern[str]]] = [
    ("syscall write (uvloop socket write, one per frame sent)", re.compile(r"^(write|writev|sendmsg|send) \(libc")),
    ("syscall read (uvloop socket read)", re.compile(r"^(read|recv|recvmsg|readv) \(libc")),
    ("syscall getpid (asyncio.get_running_loop in CPython 3.11)", re.compile(r"^getpid \(libc")),
    ("syscall getrandom (uuid4, websockets client frame masks)", re.compile(r"^getrandom \(libc")),
    (GIL_WAIT, re.compile(r"^pthread_cond_(timed)?wait \(libc")),
]


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
        if frames:  # a thread seen between frames (no Python stack) says nothing about where time goes
            stacks.append((thread, frames, int(count)))
    return stacks


def stack_category(frames: list[str]) -> str | None:
    """The category of a sample: a syscall or wait by its native leaf, else by its innermost Python
    frame (a C function is charged to its Python caller); None when the sample was idle."""
    if not frames:
        return OTHER
    leaf = frames[-1]
    if any(IDLE.search(f) for f in frames[-3:]):
        return None
    for name, pattern in SYSCALLS:
        if pattern.match(leaf):
            return name
    python = [f for f in frames if re.search(r"\.py\)$", f)]
    return category(python[-1] if python else leaf)


def category(frame: str) -> str:
    if LOOP_FRAME.match(frame):
        return LOOP_INTERNALS
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
    self_cat: Counter[str] = Counter()
    incl_cat: Counter[str] = Counter()
    self_fn: Counter[str] = Counter()
    incl_fn: Counter[str] = Counter()
    threads: Counter[str] = Counter()
    idle = 0
    for thread, frames, n in stacks:
        name = stack_category(frames)
        if name is None:
            idle += n
            continue
        threads[re.sub(r"\(0x[0-9a-f]+\)\s*|\(\d+\):?\s*", "", thread).strip() or "?"] += n
        self_cat[name] += n
        self_fn[short(frames[-1])] += n
        for cat in {category(f) for f in frames} | {name}:
            incl_cat[cat] += n
        for fn in {short(f) for f in frames}:
            incl_fn[fn] += n
    total = sum(self_cat.values())
    if not total:
        return "no busy samples"

    def pct(n: int) -> str:
        return f"{100 * n / total:5.1f}%"

    out = [f"{total} busy samples" + (f" ({idle} idle samples in epoll/queue waits left out)" if idle else "")]
    out.append("threads: " + ", ".join(f"{name} {pct(n).strip()}" for name, n in threads.most_common()))
    out.append(f"{'category':<74} {'self':>6} {'in stack':>9}")
    for name, n in self_cat.most_common():
        out.append(f"{name:<74} {pct(n)} {pct(incl_cat[name]):>9}")
    out.append(f"top {top} functions by self time:")
    out += [f"  {pct(n)}  {fn}" for fn, n in self_fn.most_common(top)]
    out.append(f"top {top} Python functions by inclusive time (the loop's own frames left out):")
    skip = re.compile(
        r"^(run|run_forever|run_until_complete|_run_once|_run|<module>|main|_bootstrap\w*|run_event_loop|"
        r"Runner\.run|run_backend|BaseModelBackend\.start|Thread\.\w+)\b"
    )
    ranked = [(fn, n) for fn, n in incl_fn.most_common() if not skip.match(fn) and fn.endswith(".py)")]
    out += [f"  {pct(n)}  {fn}" for fn, n in ranked[:top]]
    return "\n".join(out)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("path", type=Path)
    parser.add_argument("--top", type=int, default=15)
    args = parser.parse_args()
    print(summarize(args.path.read_text().splitlines(), args.top))
