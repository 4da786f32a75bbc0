"""EEGBackend: the seed's BaseModelBackend serving streamed EEG chunks."""

from __future__ import annotations

import logging
from typing import Any

from shared_protocol import BaseModelBackend

from . import __version__
from .analysis import analyze_window
from .learned_model import TorchScriptModel, feature_vector
from .payload import parse_request
from .preprocessing import warm_up
from .reply import baseline_reply, features_reply, score_reply
from .scoring import score
from .session import StreamSessions
from .settings import EEGSettings

logger = logging.getLogger(__name__)


class EEGBackend(BaseModelBackend):
    model_name = "eeg-bandpower"
    model_version = __version__

    def __init__(self, host: str, port: int, *, settings: EEGSettings, **kwargs: Any) -> None:
        super().__init__(host, port, **kwargs)
        self.settings = settings
        self.sessions = StreamSessions(settings)
        self.learned_model: TorchScriptModel | None = None

    def initialize_model(self) -> None:
        warm_up(self.settings)  # montage + filters for common rates, so the first request is fast
        if self.settings.model_path:
            self.learned_model = TorchScriptModel(self.settings.model_path)

    # ---- hot reload of the optional TorchScript model ------------------------------------------

    def model_source(self) -> str | None:
        return self.settings.model_path

    def load_model(self, source: str) -> TorchScriptModel:
        return TorchScriptModel(source)  # checks (and warms up) the module on a zero feature vector

    def swap_model(self, loaded: TorchScriptModel) -> None:
        self.learned_model = loaded  # sessions (buffers, baselines) are the pipeline's: they go on

    def model_info(self) -> dict[str, Any]:
        info = super().model_info()
        info["learned_model"] = self.learned_model.path if self.learned_model else None
        info["sessions"] = len(self.sessions)
        return info

    def process_inference(self, data: dict[str, Any]) -> dict[str, Any]:
        chunk = parse_request(data, self.settings)  # BadRequestError for anything malformed
        # BadRequestError for a refused stream change; `overloaded` when a new session finds the store full.
        session, warnings = self.sessions.acquire(chunk)
        with session.lock:
            warnings += session.push(chunk)
            buffered = len(session.buffer)
            reply: dict[str, Any] = {
                "session_id": session.session_id,
                "timestamp": chunk.timestamp,
                "sfreq": session.sfreq,
                "n_channels": len(session.ch_names),
                "samples_received": session.samples_received,
                "buffered_s": round(buffered / session.sfreq, 4),
                "window_s": self.settings.window_s,
                "window_full": buffered >= session.window_samples,
                "analyzed": buffered >= session.min_samples,
            }
            if not reply["analyzed"]:
                reply.update(score_reply(None))
                reply["baseline"] = baseline_reply(session.baseline)
                reply["warnings"] = warnings + [
                    f"buffering: {buffered / session.sfreq:.2f} s of the {self.settings.min_window_s:g} s "
                    "needed before the first analysis"
                ]
                return reply
            features = analyze_window(session.buffer.latest(), session.ch_names, session.sfreq, self.settings)
            session.baseline.offer(features, session.stream_time_s, self.settings)
            result = score(features, session.baseline, self.settings)
            baseline = baseline_reply(session.baseline)
        if chunk.timestamp is not None:
            end = chunk.timestamp + chunk.samples_uv.shape[1] / chunk.sfreq
            reply["window"] = {"start": round(end - features.duration_s, 6), "end": round(end, 6)}
        reply["window_duration_s"] = round(features.duration_s, 4)
        reply.update(features_reply(features))
        reply["baseline"] = baseline
        reply.update(score_reply(result))
        if result is None:
            warnings.append("no usable channel in this window: nothing to score")
        if self.learned_model is not None:
            vector = feature_vector(features)
            reply["learned_model"] = None if vector is None else self.learned_model.predict(vector)
        reply["warnings"] = warnings
        return reply

    def cleanup(self) -> None:
        self.sessions.clear()
        self.learned_model = None
