"""`python -m vigil_client stream ...`: send a video/camera and/or an EDF recording as `analyze`
requests, print one status line per second, write one JSONL line per frame (or EEG chunk).

    python -m vigil_client stream --video drive.mp4 --edf night.edf --fps 10 --out run.jsonl
    python -m vigil_client stream --camera 0 --token "$VIGIL_API_TOKEN"
    python -m vigil_client health

Files are replayed at `--speed` x real time (0: as fast as replies come back) and every frame
is answered; a camera is live, so when `--max-in-flight` requests are outstanding its frames are
dropped (counted) instead of queued. With video and EEG together, each frame carries the EEG
samples from its own timestamp to the next frame's, so both streams share one clock.
Exit code: 0 all answered without error, 1 some request failed, 2 bad arguments or no connection.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, TextIO

from .client import DEFAULT_URL, AnalyzeResult, VigilClient
from .errors import VigilError
from .media import Recording, read_edf, video_frames


@dataclass
class Item:
    index: int
    kind: str  # "frame" | "chunk"
    timestamp: float
    image: bytes | None = None
    eeg: dict[str, Any] | None = None


@dataclass
class Stats:
    sent: int = 0
    answered: int = 0
    failed: int = 0
    dropped: int = 0
    last: dict[str, Any] = field(default_factory=dict)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m vigil_client", description="vigil main backend client")
    parser.add_argument("--url", default=DEFAULT_URL, help=f"main backend WebSocket URL (default {DEFAULT_URL})")
    parser.add_argument("--token", default=None, help="API token (default: env VIGIL_API_TOKEN)")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("health", help="print the main backend's health (pong) as JSON")
    stream = sub.add_parser("stream", help="stream video and/or EEG as analyze requests")
    source = stream.add_mutually_exclusive_group()
    source.add_argument("--video", help="video file")
    source.add_argument("--camera", type=int, help="camera index (OpenCV)")
    stream.add_argument("--edf", help="EDF/BDF recording to send as the EEG stream")
    stream.add_argument("--fps", type=float, default=10.0, help="frames per second to send (default 10)")
    stream.add_argument("--chunk-s", type=float, default=0.5, help="EEG chunk length without video (default 0.5)")
    stream.add_argument("--speed", type=float, default=1.0, help="replay speed for files; 0 = as fast as possible")
    stream.add_argument("--duration", type=float, default=None, help="stop after this many seconds of media")
    stream.add_argument("--max-in-flight", type=int, default=4)
    stream.add_argument("--session-id", default=None, help="default: a new random id")
    stream.add_argument("--out", default=None, help="JSONL output file ('-' = stdout; default: none)")
    stream.add_argument("--quiet", action="store_true", help="no per-second status lines")
    return parser


def items(args: argparse.Namespace, recording: Recording | None) -> Iterator[Item]:
    limit = args.duration
    if args.video is not None or args.camera is not None:
        source = args.video if args.video is not None else args.camera
        started = time.monotonic()
        step = 1.0 / args.fps
        for index, (media_t, jpeg) in enumerate(video_frames(source, args.fps)):
            t = media_t if media_t is not None else time.monotonic() - started
            if limit is not None and t >= limit:
                return
            eeg = None
            if recording is not None:
                start = round(t * recording.sfreq)
                stop = min(recording.n_samples, round((t + step) * recording.sfreq))
                if stop > start:
                    eeg = recording.chunk(start, stop)
            yield Item(index, "frame", round(t, 6), image=jpeg, eeg=eeg)
        return
    assert recording is not None
    size = max(1, round(args.chunk_s * recording.sfreq))
    for index, start in enumerate(range(0, recording.n_samples, size)):
        t = start / recording.sfreq
        if limit is not None and t >= limit:
            return
        stop = min(recording.n_samples, start + size)
        yield Item(index, "chunk", round(t, 6), eeg=recording.chunk(start, stop))


def summary_line(stats: Stats, t: float) -> str:
    last = stats.last
    results = last.get("results") or {}
    fatigue, emotion, eeg = results.get("fatigue") or {}, results.get("emotion") or {}, results.get("eeg") or {}
    perclos = (fatigue.get("session") or {}).get("perclos")
    fused = last.get("fused") or {}
    parts = [
        f"t={t:7.1f}s",
        f"level={fatigue.get('fatigue_level') or '-'}",
        f"perclos={'-' if perclos is None else f'{perclos * 100:.1f}%'}",
        f"emotion={emotion.get('prediction') or '-'}",
        f"eeg_z={'-' if eeg.get('drowsiness_z') is None else format(eeg['drowsiness_z'], '+.2f')}",
        f"fused={'-' if fused.get('score') is None else format(fused['score'], '.2f')}"
        f"({fused.get('level', '-')}, conf {fused.get('confidence', 0):.2f})",
        f"sent={stats.sent} ok={stats.answered} failed={stats.failed} dropped={stats.dropped}",
    ]
    return " ".join(parts)


class OrderedWriter:
    """Writes JSONL lines in item order although replies complete out of order."""

    def __init__(self, out: TextIO | None) -> None:
        self.out = out
        self.next_index = 0
        self.waiting: dict[int, dict[str, Any] | None] = {}

    def put(self, index: int, line: dict[str, Any] | None) -> None:
        """`line` None: a dropped camera frame (no line, but later lines must not wait for it)."""
        self.waiting[index] = line
        while self.next_index in self.waiting:
            ready = self.waiting.pop(self.next_index)
            if ready is not None and self.out is not None:
                self.out.write(json.dumps(ready, allow_nan=False) + "\n")
                self.out.flush()
            self.next_index += 1


async def stream(args: argparse.Namespace, out: TextIO | None, log: TextIO) -> int:
    recording = read_edf(args.edf) if args.edf else None
    if recording is not None:
        for note in recording.notes:
            print(f"note: {note}", file=log)
    live = args.camera is not None
    session_id = args.session_id or f"cli-{uuid.uuid4().hex[:8]}"
    stats = Stats()
    writer = OrderedWriter(out)
    tasks: set[asyncio.Task] = set()

    async with VigilClient(args.url, token=args.token, max_in_flight=args.max_in_flight) as client:

        async def one(item: Item, first: bool) -> None:
            sent_at = time.monotonic()
            line: dict[str, Any] = {"index": item.index, "kind": item.kind, "timestamp": item.timestamp}
            try:
                result: AnalyzeResult = await client.analyze(
                    image=item.image,
                    eeg=item.eeg,
                    session_id=session_id,
                    timestamp=item.timestamp,
                    reset_session=first,
                )
                stats.answered += 1
                line.update(
                    request_id=result.request_id,
                    latency_ms=round((time.monotonic() - sent_at) * 1000, 1),
                    results=result.results,
                    errors=result.errors,
                    fused=result.fused,
                )
                stats.last = line
            except VigilError as exc:
                stats.failed += 1
                line["error"] = {"code": exc.code, "message": exc.message}
            writer.put(item.index, line)

        started = time.monotonic()
        last_print = started
        first = True
        for item in items(args, recording):
            if args.speed > 0 and not live:
                delay = started + item.timestamp / args.speed - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)
            if live and client.in_flight >= args.max_in_flight:
                stats.dropped += 1
                writer.put(item.index, None)
            else:
                if not live:
                    while len(tasks) >= args.max_in_flight:  # files: wait for a slot, never drop
                        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
                stats.sent += 1
                task = asyncio.create_task(one(item, first))
                first = False
                tasks.add(task)
                task.add_done_callback(tasks.discard)
            await asyncio.sleep(0)
            now = time.monotonic()
            if not args.quiet and now - last_print >= 1.0:
                print(summary_line(stats, item.timestamp), file=log, flush=True)
                last_print = now
        if tasks:
            await asyncio.gather(*tasks)
        if not args.quiet:
            print(summary_line(stats, stats.last.get("timestamp", 0.0) if stats.last else 0.0), file=log, flush=True)
    return 1 if stats.failed else 0


async def health(args: argparse.Namespace) -> int:
    async with VigilClient(args.url, token=args.token) as client:
        print(json.dumps(await client.health(), indent=2))
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command == "stream":
        if args.video is None and args.camera is None and args.edf is None:
            parser.error("stream needs --video, --camera or --edf")
        if args.fps <= 0 or args.chunk_s <= 0 or args.speed < 0 or args.max_in_flight < 1:
            parser.error("--fps and --chunk-s must be > 0, --speed >= 0, --max-in-flight >= 1")
    try:
        if args.command == "health":
            return asyncio.run(health(args))
        if args.out in (None, "-"):
            return asyncio.run(stream(args, sys.stdout if args.out == "-" else None, sys.stderr))
        with open(args.out, "w", encoding="utf-8") as out:
            return asyncio.run(stream(args, out, sys.stderr))
    except VigilError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except (OSError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
