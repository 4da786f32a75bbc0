"""The page's EDF/BDF reader (static/edf.js) in Chromium against pyedflib: units, the common
sample rate, annotation channels dropped, and the float32 `data_b64` chunks the eeg backend reads."""

from __future__ import annotations

import base64
from pathlib import Path

import numpy as np
import pyedflib
import pytest

from ..client.edf_files import write_variant
from .conftest import chrome
from .stack import BareGatewayThread

PARSE = """
const [b64, start, stop, done] = arguments;
import("/static/edf.js").then((edf) => {
  const bytes = Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
  const rec = edf.parseEdf(bytes.buffer);
  done({sfreq: rec.sfreq, chNames: rec.chNames, n: rec.data[0].length, notes: rec.notes,
        data: rec.data.map((ch) => Array.from(ch.subarray(0, 4000))), chunk: edf.chunkB64(rec, start, stop)});
}).catch((err) => done({error: String(err)}));
"""


@pytest.fixture(scope="module")
def page(chromium):
    thread = BareGatewayThread(())
    url = thread.start_and_wait()
    driver = chrome(chromium)
    driver.set_script_timeout(60)
    driver.get(url.replace("ws://", "http://") + "/")
    yield driver
    driver.quit()
    thread.stop()


def parse(driver, path: Path, start: int, stop: int) -> dict:
    result = driver.execute_async_script(PARSE, base64.b64encode(path.read_bytes()).decode(), start, stop)
    assert "error" not in result, result
    return result


@pytest.mark.parametrize("suffix", [".edf", ".bdf"])
def test_edf_js_reads_what_pyedflib_wrote(page, tmp_path, suffix):
    path = tmp_path / f"mixed{suffix}"
    expected = write_variant(path)
    result = parse(page, path, 100, 164)
    assert result["sfreq"] == expected["sfreq"] and result["chNames"] == expected["ch_names"]
    np.testing.assert_allclose(np.array(result["data"]), expected["data_uv"], rtol=1e-5, atol=1e-3)
    chunk = np.frombuffer(base64.b64decode(result["chunk"]), dtype="<f4").reshape(2, 64)
    np.testing.assert_allclose(chunk, expected["data_uv"][:, 100:164], rtol=1e-5, atol=1e-3)


def test_edf_js_on_pyedflib_test_file(page):
    path = Path(pyedflib.__file__).parent / "data" / "test_generator.edf"
    with pyedflib.EdfReader(str(path)) as reader:
        labels = reader.getSignalLabels()
        first = np.array([reader.readSignal(i, start=0, n=400) for i in range(reader.signals_in_file)])
    result = parse(page, path, 0, 400)
    assert result["chNames"] == labels and result["sfreq"] == 200 and result["n"] == 120000
    chunk = np.frombuffer(base64.b64decode(result["chunk"]), dtype="<f4").reshape(len(labels), 400)
    np.testing.assert_allclose(chunk, first, rtol=1e-5, atol=1e-3)


def test_edf_js_refuses_what_is_not_edf(page, tmp_path):
    path = tmp_path / "not.edf"
    path.write_bytes(b"0       " + b"x" * 400)
    result = page.execute_async_script(PARSE, base64.b64encode(path.read_bytes()).decode(), 0, 1)
    assert "EDF header field" in result["error"] or "inconsistent" in result["error"], result
