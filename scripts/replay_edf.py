#!/usr/bin/env python3
"""Stream an EDF/BDF recording (read with MNE) to vigil as EEG chunks, in real time or faster.

Default target: the main backend, ws://127.0.0.1:8765, as `inference_request` with "model": "eeg".
  --mode analyze   send `analyze` requests instead (the gateway fans `eeg` to the eeg backend)
  --direct         talk to an EEG backend itself (e.g. --url ws://127.0.0.1:8769): no `model` field
  --speed 1        real time (default); 2 = twice as fast; 0 = as fast as replies come back

Each chunk is `data.eeg` with sfreq, ch_names, unit "V" and data_b64 (little-endian float32,
channel-major) + shape, plus session_id and timestamp (seconds since the recording start + --t0).
Exit code 0 when every request got a result, 1 when any got an error, 2 on bad arguments.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import logging
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import mne
import numpy as np
from websockets.asyncio.client import connect
from websockets.exceptions import WebSocketException

logger = logging.getLogger("replay_edf")


@dataclass
class ReplaySummary:
    sent: int = 0
    results: int = 0
    errors: list[dict[str, Any]] = field(default_factory=list)
    last_result: dict[str, Any] | None = None
    levels: dict[str, int] = field(default_factory=dict)


def load_recording(path: str, channels: list[str] | None) -> mne.io.BaseRaw:
    suffix = Path(path).suffix.lower()
    if suffix not in (".edf", ".bdf"):
        raise ValueError(f"{path}: expected an .edf or .bdf file")
    reader = mne.io.read_raw_bdf if suffix == ".bdf" else mne.io.read_raw_edf
    raw = reader(path, preload=True, verbose="ERROR")
    if channels:
        missing = [c for c in channels if c not in raw.ch_names]
        if missing:
            raise ValueError(f"channels not in {path}: {missing} (it has {raw.ch_names})")
        raw.pick(channels)
    else:
        raw.pick("eeg")  # drop annotation/stim/misc channels MNE recognises
    return raw


def eeg_chunk(raw: mne.io.BaseRaw, start: int, stop: int) -> dict[str, Any]:
    block = np.ascontiguousarray(raw.get_data(start=start, stop=stop), dtype="<f4")  # volts
    return {
        "sfreq": float(raw.info["sfreq"]),
        "ch_names": list(raw.ch_names),
        "unit": "V",
        "data_b64": base64.b64encode(block.tobytes()).decode("ascii"),
        "shape": list(block.shape),
    }


def build_message(args: argparse.Namespace, request_id: str, data: dict[str, Any]) -> dict[str, Any]:
    if args.mode == "analyze":
        return {"type": "analyze", "request_id": request_id, "data": data}
    message = {"type": "inference_request", "request_id": request_id, "data": data}
    if not args.direct:
        message["model"] = "eeg"
    return message


def eeg_result_of(reply: dict[str, Any]) -> tuple[dict[str, Any] | None, dict[str, Any] | None]:
    """(result, error) of the eeg backend in an inference_response / analyze_response / error."""
    if reply.get("type") == "inference_response":
        return reply.get("data"), None
    if reply.get("type") == "analyze_response":
        body = reply.get("data") or {}
        if "eeg" in (body.get("results") or {}):
            return body["results"]["eeg"], None
        return None, (body.get("errors") or {}).get("eeg", {"error": "no eeg result in analyze_response"})
    return None, {"code": reply.get("code"), "error": reply.get("error", reply)}


async def replay(args: argparse.Namespace) -> ReplaySummary:
    raw = load_recording(args.file, args.channels)
    sfreq = raw.info["sfreq"]
    first = int(round(args.start_s * sfreq))
    last = raw.n_times if args.max_seconds is None else min(raw.n_times, first + int(round(args.max_seconds * sfreq)))
    step = max(1, int(round(args.chunk_s * sfreq)))
    logger.info(
        "replaying %s: %d channels at %g Hz, %.1f s in %.2f s chunks to %s",
        args.file,
        len(raw.ch_names),
        sfreq,
        (last - first) / sfreq,
        step / sfreq,
        args.url,
    )
    summary = ReplaySummary()
    started = time.monotonic()
    async with connect(args.url, max_size=args.max_message_size, open_timeout=args.timeout) as ws:
        for k, start in enumerate(range(first, last, step)):
            stop = min(start + step, last)
            offset_s = (start - first) / sfreq
            if args.speed > 0:  # wait until this chunk's last sample "has been recorded"
                due = started + (offset_s + (stop - start) / sfreq) / args.speed
                await asyncio.sleep(max(0.0, due - time.monotonic()))
            data = {
                "session_id": args.session_id,
                "timestamp": args.t0 + start / sfreq,
                "eeg": eeg_chunk(raw, start, stop),
            }
            if k == 0 and args.reset_session:
                data["reset_session"] = True
            request_id = f"edf-{k}"
            await ws.send(json.dumps(build_message(args, request_id, data)))
            summary.sent += 1
            reply = json.loads(await asyncio.wait_for(ws.recv(), args.timeout))
            if reply.get("request_id") != request_id:
                raise RuntimeError(f"reply for {reply.get('request_id')!r} while waiting for {request_id!r}")
            result, error = eeg_result_of(reply)
            if error is not None:
                summary.errors.append(error)
                logger.warning("%s: error %s", request_id, error)
                if args.stop_on_error:
                    break
                continue
            summary.results += 1
            summary.last_result = result
            level = result.get("fatigue_level")
            if level is not None:
                summary.levels[level] = summary.levels.get(level, 0) + 1
            logger.debug(
                "%s t=%.2fs analysed=%s level=%s prediction=%s bad=%s",
                request_id,
                offset_s,
                result.get("analyzed"),
                level,
                result.get("prediction"),
                result.get("bad_channels"),
            )
    logger.info(
        "sent %d chunks in %.1f s: %d results, %d errors, levels %s",
        summary.sent,
        time.monotonic() - started,
        summary.results,
        len(summary.errors),
        summary.levels,
    )
    return summary


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("file", help="EDF or BDF recording")
    p.add_argument(
        "--url", default="ws://127.0.0.1:8765", help="main backend (default) or, with --direct, an eeg backend"
    )
    p.add_argument("--mode", choices=("inference", "analyze"), default="inference")
    p.add_argument("--direct", action="store_true", help="omit 'model': the URL is an EEG backend itself")
    p.add_argument("--speed", type=float, default=1.0, help="1 = real time, 0 = as fast as possible")
    p.add_argument("--chunk-s", type=float, default=0.5, help="seconds per chunk")
    p.add_argument("--start-s", type=float, default=0.0, help="skip this much of the recording")
    p.add_argument("--max-seconds", type=float, default=None, help="replay at most this much")
    p.add_argument("--channels", type=lambda s: [c.strip() for c in s.split(",") if c.strip()], default=None)
    p.add_argument("--session-id", default="edf-replay")
    p.add_argument("--t0", type=float, default=0.0, help="timestamp of the recording's first sample")
    p.add_argument("--reset-session", action="store_true", help="start the session afresh on the first chunk")
    p.add_argument("--stop-on-error", action="store_true")
    p.add_argument("--timeout", type=float, default=30.0, help="seconds to wait for each reply")
    p.add_argument("--max-message-size", type=int, default=16 * 1024 * 1024)
    p.add_argument("--summary-json", default=None, help="write the last eeg result and counts here")
    p.add_argument("--log-level", default="INFO")
    args = p.parse_args(argv)
    if args.direct and args.mode == "analyze":
        p.error("--direct talks to an EEG backend, which only understands inference_request")
    if args.speed < 0 or args.chunk_s <= 0:
        p.error("--speed must be >= 0 and --chunk-s > 0")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s - %(name)s - %(levelname)s - %(message)s")
    try:
        summary = asyncio.run(replay(args))
    except (OSError, ValueError, WebSocketException, TimeoutError) as exc:
        logger.error("%s", exc)
        return 2
    if args.summary_json:
        Path(args.summary_json).write_text(
            json.dumps(
                {
                    "sent": summary.sent,
                    "results": summary.results,
                    "errors": summary.errors,
                    "levels": summary.levels,
                    "last_result": summary.last_result,
                },
                indent=2,
            )
        )
    return 1 if summary.errors else 0


if __name__ == "__main__":
    sys.exit(main())
