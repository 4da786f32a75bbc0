"""`python -m vigil_client stream` on a generated video and pyedflib's test EDF -> one JSONL line
per frame / chunk, through a real MainBackend whose controlled backends echo what they received (so
the EEG samples that arrived can be checked against pyedflib's reading of the file)."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import sys
from pathlib import Path

import cv2
import numpy as np
import pyedflib
import pytest

from vigil_client.media import read_edf

from .conftest import CLIENT_SRC
from .edf_files import write_variant
from .gateway_stack import controlled_stack

EDF = Path(pyedflib.__file__).parent / "data" / "test_generator.edf"


def run(coro):
    return asyncio.run(asyncio.wait_for(coro, timeout=120))


@pytest.fixture(scope="module")
def edf_signals() -> tuple[np.ndarray, float, list[str]]:
    with pyedflib.EdfReader(str(EDF)) as reader:
        data = np.array([reader.readSignal(i) for i in range(reader.signals_in_file)])
        return data, float(reader.getSampleFrequency(0)), reader.getSignalLabels()


@pytest.fixture(scope="module")
def video_path(tmp_path_factory) -> Path:
    """2 s of the astronaut photo at 10 fps, drifting a few pixels per frame, as MJPG in AVI."""
    from skimage import data

    image = cv2.cvtColor(data.astronaut(), cv2.COLOR_RGB2BGR)
    path = tmp_path_factory.mktemp("video") / "astronaut.avi"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10.0, (512, 512))
    assert writer.isOpened()
    for k in range(20):
        writer.write(np.roll(image, 2 * k, axis=1))
    writer.release()
    return path


def decode_eeg(payload: dict) -> np.ndarray:
    raw = base64.b64decode(payload["data_b64"])
    return np.frombuffer(raw, dtype="<f4").reshape(payload["shape"])


async def run_cli(url: str, *args: str) -> tuple[int, str]:
    env = {**os.environ, "PYTHONPATH": str(CLIENT_SRC)}
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "vigil_client",
        "--url",
        url,
        "stream",
        *args,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    output, _ = await proc.communicate()
    return proc.returncode, output.decode()


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_read_edf_matches_pyedflib(edf_signals):
    expected, sfreq, labels = edf_signals
    recording = read_edf(EDF)
    assert recording.sfreq == sfreq == 200.0
    assert recording.ch_names == labels
    got = np.array([np.frombuffer(channel, dtype=np.float32) for channel in recording.data])
    assert got.shape == expected.shape == (11, 120000)
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-3)


def test_video_with_edf_gives_one_line_per_frame_and_the_right_eeg(tmp_path, video_path, edf_signals):
    expected, sfreq, labels = edf_signals
    out = tmp_path / "run.jsonl"

    async def scenario():
        async with controlled_stack() as (url, _gateway, _backends):
            return await run_cli(
                url, "--video", str(video_path), "--edf", str(EDF), "--fps", "10", "--speed", "0", "--out", str(out)
            )

    code, output = run(scenario())
    assert code == 0, output
    lines = read_jsonl(out)
    assert [line["index"] for line in lines] == list(range(20))
    assert [line["timestamp"] for line in lines] == pytest.approx([k / 10 for k in range(20)])
    session_ids = set()
    for k, line in enumerate(lines):
        assert line["kind"] == "frame" and line["errors"] == {}, line
        assert set(line["results"]) == {"fatigue", "emotion", "eeg"}
        fatigue_echo = line["results"]["fatigue"]["echo"]
        jpeg = base64.b64decode(fatigue_echo["image"])
        frame = cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR)
        assert frame.shape == (512, 512, 3)
        assert fatigue_echo.get("reset_session", False) is (k == 0)  # a fresh session per run
        eeg = line["results"]["eeg"]["echo"]["eeg"]
        assert eeg["sfreq"] == sfreq and eeg["ch_names"] == labels and eeg["unit"] == "uV"
        start, stop = round(k / 10 * sfreq), round((k + 1) / 10 * sfreq)
        np.testing.assert_allclose(decode_eeg(eeg), expected[:, start:stop], rtol=1e-5, atol=1e-3)
        session_ids.add(fatigue_echo["session_id"])
    assert len(session_ids) == 1
    assert "level=" in output and "sent=20 ok=20 failed=0" in output


def test_fps_subsamples_the_video(tmp_path, video_path):
    out = tmp_path / "half.jsonl"

    async def scenario():
        async with controlled_stack(names=("fatigue", "emotion")) as (url, _gateway, _backends):
            return await run_cli(url, "--video", str(video_path), "--fps", "5", "--speed", "0", "--out", str(out))

    code, output = run(scenario())
    assert code == 0, output
    lines = read_jsonl(out)
    assert [line["timestamp"] for line in lines] == pytest.approx([k / 5 for k in range(10)])
    assert all(set(line["results"]) == {"fatigue", "emotion"} for line in lines)


def test_edf_alone_gives_one_line_per_chunk(tmp_path, edf_signals):
    expected, _sfreq, _labels = edf_signals
    out = tmp_path / "eeg.jsonl"

    async def scenario():
        async with controlled_stack(names=("eeg",)) as (url, _gateway, _backends):
            return await run_cli(
                url, "--edf", str(EDF), "--chunk-s", "0.5", "--duration", "5", "--speed", "0", "--out", str(out)
            )

    code, output = run(scenario())
    assert code == 0, output
    lines = read_jsonl(out)
    assert len(lines) == 10 and all(line["kind"] == "chunk" for line in lines)
    for k, line in enumerate(lines):
        eeg = line["results"]["eeg"]["echo"]["eeg"]
        np.testing.assert_allclose(decode_eeg(eeg), expected[:, k * 100 : (k + 1) * 100], rtol=1e-5, atol=1e-3)


def test_failed_requests_are_lines_too_and_set_the_exit_code(tmp_path, video_path):
    out = tmp_path / "down.jsonl"

    async def scenario():
        # emotion is configured but nothing listens: every frame still gets a line, with the error
        async with controlled_stack(names=("fatigue",)) as (url, gateway, _backends):
            del gateway
            return await run_cli(url, "--edf", str(EDF), "--duration", "1", "--speed", "0", "--out", str(out))

    code, output = run(scenario())
    assert code == 1, output
    lines = read_jsonl(out)
    assert len(lines) == 2
    assert all(
        line["error"]["code"] == "bad_request" and "none of the inputs" in line["error"]["message"] for line in lines
    )


def test_bad_arguments_exit_2(tmp_path):
    async def scenario():
        return await run_cli("ws://127.0.0.1:9", "--fps", "10")

    code, output = run(scenario())
    assert code == 2 and "needs --video, --camera or --edf" in output


@pytest.mark.parametrize("suffix", [".edf", ".bdf"])
def test_read_edf_converts_units_and_keeps_the_common_rate(tmp_path, suffix):
    expected = write_variant(tmp_path / f"mixed{suffix}")
    recording = read_edf(tmp_path / f"mixed{suffix}")
    assert recording.sfreq == expected["sfreq"] and recording.ch_names == expected["ch_names"]
    got = np.array([np.frombuffer(channel, dtype=np.float32) for channel in recording.data])
    np.testing.assert_allclose(got, expected["data_uv"], rtol=1e-5, atol=1e-3)
    chunk = recording.chunk(256, 512)
    np.testing.assert_allclose(decode_eeg(chunk), expected["data_uv"][:, 256:512], rtol=1e-5, atol=1e-3)
