"""EmotionBackend: facial expression per face, primary-face smoothing per session, on port 8768."""

from __future__ import annotations

import logging
from typing import Any

import torch

from shared_protocol import BadRequestError, BaseModelBackend, ProtocolError

from .affect import AffectMapper
from .analyzer import FrameAnalysis, FrameAnalyzer
from .classifier import ExpressionClassifier
from .face_finders import FaceFinder, make_face_finder
from .request import EmotionRequest, parse_request
from .response import build_reply
from .settings import EmotionSettings
from .smoothing import SessionSmoother

logger = logging.getLogger(__name__)


class EmotionBackend(BaseModelBackend):
    model_name = "emotion"
    model_version = "1.0.0"

    def __init__(self, host: str, port: int, *, settings: EmotionSettings, **kwargs: Any):
        super().__init__(host, port, **kwargs)
        self.settings = settings
        self.classifier: ExpressionClassifier | None = None
        self.analyzer: FrameAnalyzer | None = None
        self.affect: AffectMapper | None = None
        self.faces: FaceFinder | None = None  # the face detector outlives classifier reloads
        self.smoother = SessionSmoother(
            settings.smoothing_alpha,
            max_gap_s=settings.smoothing_max_gap_s,
            max_sessions=settings.max_sessions,
            max_sessions_per_owner=settings.max_sessions_per_owner,
            idle_ttl_s=settings.session_idle_ttl_s,
        )

    def initialize_model(self) -> None:
        # Raises ModelLoadError with the reason; the base class then reports `unhealthy` with it.
        self.swap_model(self.load_model(self.settings.model_dir))

    # ---- hot reload: any local AutoModelForImageClassification directory ------------------------

    def model_source(self) -> str:
        return self.settings.model_dir

    def load_model(self, source: str) -> tuple[ExpressionClassifier, FrameAnalyzer, AffectMapper]:
        # ExpressionClassifier runs one forward pass on a test image: the warm-up and the check.
        classifier = ExpressionClassifier(source, self.settings.device)
        if self.faces is None:
            self.faces = make_face_finder(self.settings)
        return classifier, FrameAnalyzer(classifier, self.settings, self.faces), AffectMapper(classifier.labels)

    def swap_model(self, loaded: tuple[ExpressionClassifier, FrameAnalyzer, AffectMapper]) -> None:
        classifier, analyzer, affect = loaded
        if self.classifier is not None and classifier.labels != self.classifier.labels:
            # Smoothed probabilities are per label: another label set cannot continue them.
            logger.info("labels changed %s -> %s: smoothing restarts", self.classifier.labels, classifier.labels)
            self.smoother.clear()
        self.classifier, self.analyzer, self.affect = classifier, analyzer, affect
        self.device = str(classifier.device)
        logger.info(
            "loaded %s model from %s on %s, labels %s (valence/arousal %s)",
            classifier.model_type,
            classifier.model_dir,
            self.device,
            classifier.labels,
            "on" if self.affect.supported else "off: labels not all known",
        )

    def model_info(self) -> dict[str, Any]:
        info = super().model_info()
        if self.classifier is not None:
            info.update(
                model_type=self.classifier.model_type,
                model_dir=str(self.classifier.model_dir),
                labels=self.classifier.labels,
                detector=self.analyzer.faces.name if self.analyzer is not None else self.settings.detector,
            )
        return info

    def process_batch(self, batch: list[dict[str, Any]]) -> list[dict[str, Any] | Exception]:
        """Every face of every frame in the batch goes through the classifier in one forward pass;
        a request with bad input (or a new session that finds the session store full) fails alone.
        Smoothing sees the frames in arrival order."""
        if self.analyzer is None or self.classifier is None or self.affect is None:
            raise RuntimeError("model is not initialized")
        parsed: list[EmotionRequest | BadRequestError] = []
        for data in batch:
            try:
                parsed.append(parse_request(data, self.settings))
            except BadRequestError as exc:
                parsed.append(exc)
        valid = [item for item in parsed if not isinstance(item, BadRequestError)]
        analyses = iter(self.analyzer.analyze_many([request.image for request in valid]))
        results: list[dict[str, Any] | Exception] = []
        for item in parsed:
            if isinstance(item, BadRequestError):
                results.append(item)
                continue
            analysis = next(analyses)
            try:
                results.append(self._reply(item, analysis))
            except ProtocolError as exc:  # a full session store: this request alone is `overloaded`
                results.append(exc)
        return results

    def _reply(self, request: EmotionRequest, analysis: FrameAnalysis) -> dict[str, Any]:
        primary = analysis.faces[0].probabilities if analysis.faces else None
        smoothed = self.smoother.update(
            request.session_key, primary, timestamp=request.timestamp, reset=request.reset_session
        )
        return build_reply(
            self.classifier.labels,
            analysis,
            smoothed,
            self.affect,
            session_id=request.session_id,
            timestamp=request.timestamp,
            image_shape=request.image.shape,
            smoothing_window=self.settings.smoothing_window,
        )

    def cleanup(self) -> None:
        self.smoother.clear()
        self.analyzer = None
        self.classifier = None
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
