"""One request through the pipeline: landmarks -> per-frame geometry -> session -> fatigue score."""

from __future__ import annotations

import math
import time
from typing import Any

import numpy as np

from shared_protocol.errors import BadRequestError

from .engine import FaceLandmarks, LandmarkEngine
from .gaze import Gaze
from .geometry import LEFT_EYE_CONTOUR, RIGHT_EYE_CONTOUR, FaceGeometry, measure_face
from .request import FatigueRequest
from .scoring import assess
from .session import FrameObservation, SessionTracker
from .settings import FatigueSettings
from .store import FatigueSessions

TIMESTAMP_CLIENT = "client"
TIMESTAMP_SERVER = "server"
# Two frames of one server-timed session taken in the same instant still get distinct, ordered times.
_SERVER_TICK_S = 1e-6


class FatigueAnalyzer:
    def __init__(self, engine: LandmarkEngine, settings: FatigueSettings):
        self.engine = engine
        self.settings = settings
        self.sessions = FatigueSessions(settings)
        self._clock = time.monotonic

    def analyze(self, request: FatigueRequest, faces: list[FaceLandmarks] | None = None) -> dict[str, Any]:
        """`faces`: the engine's result for this frame when the caller already ran it (batching)."""
        if request.frame is None:  # reset-only request
            with self.sessions.lock:
                existed = self.sessions.reset(request.session_key)
            return {"session_id": request.session_id, "session_reset": True, "session_existed": existed}
        if faces is None:
            faces = self.engine.detect([request.frame])[0]
        height, width = request.frame.shape[:2]
        face = max(faces, key=lambda f: f.area) if faces else None  # several faces: the largest
        geometry = measure_face(face.points, width, height) if face is not None else None
        with self.sessions.lock:
            if request.reset_session:
                self.sessions.reset(request.session_key)
            tracker = self.sessions.get(request.session_key)
            timestamp, source = self._frame_time(tracker, request.timestamp, request.received_at)
            verdict = tracker.observe(_observation(timestamp, geometry))
            metrics = tracker.metrics()
        assessment = assess(metrics, self.settings)
        reply: dict[str, Any] = {
            "prediction": assessment.score,
            "confidence": assessment.confidence,
            "fatigue_level": assessment.level,
            "reasons": assessment.reasons,
            "cue_scores": assessment.cue_scores,
            "session_id": request.session_id,
            "timestamp": timestamp,
            "timestamp_source": source,
            "session_reset": request.reset_session,
            "engine": self.engine.name,
            "face_count": len(faces),
            **_face_fields(face, geometry),
            "eyes_closed": verdict.eyes_closed,
            "mouth_open": verdict.mouth_open,
            "gaze_on_target": verdict.gaze_on_target,
            "events": list(verdict.events),
            "session": metrics,
        }
        if verdict.warning:
            reply["warning"] = verdict.warning
        return _json_ready(reply)

    def _frame_time(
        self, tracker: SessionTracker, client_timestamp: float | None, received_at: float | None = None
    ) -> tuple[float, str]:
        """The frame's time on the session's clock: the client's timestamp, or without one the
        server's clock when the frame arrived (when analysed, for in-process calls; monotonic,
        strictly increasing per session).
        A session keeps the clock of its first frame: mixing two clocks would make its windows
        meaningless. Call with the sessions lock held."""
        source = TIMESTAMP_SERVER if client_timestamp is None else TIMESTAMP_CLIENT
        if tracker.timestamp_source is not None and tracker.timestamp_source != source:
            raise BadRequestError(
                f"session {tracker.session_id!r} is timed by the {tracker.timestamp_source} clock: "
                + ("send 'timestamp' with every frame" if source == TIMESTAMP_SERVER else "omit 'timestamp'")
                + " or start over with 'reset_session': true"
            )
        tracker.timestamp_source = source
        if client_timestamp is not None:
            return client_timestamp, source
        now = received_at if received_at is not None else self._clock()
        if tracker.last_timestamp is not None:
            now = max(now, tracker.last_timestamp + _SERVER_TICK_S)
        return now, source


def _observation(timestamp: float, geometry: FaceGeometry | None) -> FrameObservation:
    if geometry is None:
        return FrameObservation(timestamp, face_detected=False)
    pose, gaze = geometry.head_pose, geometry.gaze
    pitch = pose.pitch if pose is not None else None
    # Where the subject looks: the head's direction turned further by the eyes' rotation.
    look_yaw = pose.yaw + gaze.yaw if pose is not None and gaze is not None else None
    look_pitch = pose.pitch + gaze.pitch if pose is not None and gaze is not None else None
    return FrameObservation(
        timestamp, True, ear=geometry.ear, mar=geometry.mar, pitch=pitch, look_yaw=look_yaw, look_pitch=look_pitch
    )


def _face_fields(face: FaceLandmarks | None, geometry: FaceGeometry | None) -> dict[str, Any]:
    if face is None or geometry is None:
        return {
            "face_detected": False,
            "face_box": None,
            "detection_score": None,
            "ear_left": None,
            "ear_right": None,
            "ear": None,
            "mar": None,
            "head_pose": None,
            "gaze": None,
            "eye_contours": None,
        }
    x, y, w, h = face.box
    pose = geometry.head_pose
    return {
        "face_detected": True,
        "face_box": {"x": x, "y": y, "width": w, "height": h},
        "detection_score": face.score,
        "ear_left": geometry.ear_left,
        "ear_right": geometry.ear_right,
        "ear": geometry.ear,
        "mar": geometry.mar,
        "head_pose": None if pose is None else {"pitch": pose.pitch, "yaw": pose.yaw, "roll": pose.roll},
        "gaze": _gaze_fields(geometry.gaze),
        # Eyelid outlines in frame pixels (16 points per eye), for overlays such as the dashboard's.
        "eye_contours": {
            "right": np.round(face.points[list(RIGHT_EYE_CONTOUR), :2], 1).tolist(),
            "left": np.round(face.points[list(LEFT_EYE_CONTOUR), :2], 1).tolist(),
        },
    }


def _gaze_fields(gaze: Gaze | None) -> dict[str, Any] | None:
    if gaze is None:
        return None
    return {
        "yaw": gaze.yaw,
        "pitch": gaze.pitch,
        "left": {"yaw": gaze.left.yaw, "pitch": gaze.left.pitch},
        "right": {"yaw": gaze.right.yaw, "pitch": gaze.right.pitch},
    }


def _json_ready(value: Any) -> Any:
    """numpy scalars -> Python, floats rounded for readability, non-finite -> None (not JSON)."""
    if isinstance(value, dict):
        return {k: _json_ready(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_ready(v) for v in value]
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        value = float(value)
        return round(value, 6) if math.isfinite(value) else None
    return value
