"""The optional TorchScript model: loaded from model_path, fed the window's features."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from eeg import samples

from vigil_eeg.backend import EEGBackend
from vigil_eeg.learned_model import FEATURE_NAMES, TorchScriptModel, feature_vector
from vigil_eeg.settings import EEGSettings

# torch 2.13 deprecates torch.jit.script; the test still needs a real TorchScript file to load.
pytestmark = pytest.mark.filterwarnings("ignore:`torch.jit.script` is deprecated:DeprecationWarning")


@pytest.fixture()
def tiny_model_path(tmp_path):
    """A real (untrained, fixed-weight) TorchScript module of the expected input size."""
    torch.manual_seed(0)
    module = torch.nn.Sequential(torch.nn.Linear(len(FEATURE_NAMES), 1), torch.nn.Sigmoid())
    path = tmp_path / "tiny_eeg.pt"
    torch.jit.script(module).save(str(path))
    return path, module


def test_backend_reports_the_model_output(tiny_model_path):
    path, module = tiny_model_path
    backend = EEGBackend("127.0.0.1", 0, settings=EEGSettings(model_path=str(path)))
    backend.initialize_model()
    assert backend.model_info()["learned_model"] == str(path)
    reply = backend.process_inference(samples.valid_data())
    learned = reply["learned_model"]
    assert len(learned["output"]) == 1 and 0.0 < learned["score"] < 1.0

    # The same features through the original module give the same number.
    rel = reply["relative_power"]["mean"]
    idx = reply["indices"]
    vector = [rel[b] for b in ("delta", "theta", "alpha", "beta", "gamma")]
    vector += [
        float(np.log10(idx[n])) for n in ("theta_beta", "alpha_beta", "theta_alpha_beta", "theta_alpha_alpha_beta")
    ]
    with torch.no_grad():
        expected = float(module(torch.tensor([vector], dtype=torch.float32))[0, 0])
    assert learned["score"] == pytest.approx(expected, abs=1e-4)


def test_module_with_the_wrong_input_size_fails_at_load(tmp_path):
    path = tmp_path / "wrong.pt"
    torch.jit.script(torch.nn.Linear(3, 1)).save(str(path))
    with pytest.raises(RuntimeError, match=r"does not accept a \(1, 9\) float32 input"):
        TorchScriptModel(str(path))


def test_missing_model_file_fails_at_load(tmp_path):
    backend = EEGBackend("127.0.0.1", 0, settings=EEGSettings(model_path=str(tmp_path / "absent.pt")))
    with pytest.raises(FileNotFoundError, match="absent.pt"):
        backend.initialize_model()


def test_feature_vector_is_none_without_good_channels():
    from vigil_eeg.analysis import analyze_window

    features = analyze_window(np.zeros((2, 512)), ("Fz", "Cz"), 128.0, EEGSettings())
    assert feature_vector(features) is None
