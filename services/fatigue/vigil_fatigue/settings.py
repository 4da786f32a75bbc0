"""Fatigue service settings: the common service settings plus limits, engine options and the
fatigue thresholds with their sources.

Sources, lowest priority first (shared_protocol.settings): defaults, a YAML file (`--config` or
`VIGIL_FATIGUE_CONFIG`), `VIGIL_FATIGUE_<FIELD>` env vars (e.g. `VIGIL_FATIGUE_PERCLOS_WINDOW_S=30`),
flags `--<field-name>`. Any bad value exits with code 2 naming the setting.
"""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import Field, model_validator

from shared_protocol.settings import ServiceSettings, service_config

ENV_PREFIX = "VIGIL_FATIGUE_"
DEFAULT_PORT = 8767


class FatigueSettings(ServiceSettings):
    model_config = service_config("FATIGUE")
    legacy_env: ClassVar[dict[str, str]] = {
        **ServiceSettings.legacy_env,
        "VIGIL_FATIGUE_TORCH_DEVICE": "device",
    }

    port: int = Field(DEFAULT_PORT, ge=0, le=65535, description="port to bind")

    # ---- input limits ------------------------------------------------------------------------
    max_image_bytes: int = Field(8 * 1024 * 1024, gt=0)  # decoded JPEG/PNG bytes
    max_image_side: int = Field(4096, gt=0)  # pixels; larger frames are refused, not resized

    # ---- landmark engine ---------------------------------------------------------------------
    max_faces: int = Field(4, ge=1)  # faces meshed per frame; the largest is analysed
    min_detection_confidence: float = Field(0.5, gt=0, lt=1)
    # 0 = short-range detector (faces within ~2 m, webcam/driver camera; fastest), 1 = full-range
    # (small faces; a face the mesh misses in the full frame is then meshed on a crop around it).
    face_detection_model: int = Field(0, ge=0, le=1)
    # Which landmark engine: "torch" (MediaPipe's face detection + 468-point mesh converted to
    # PyTorch at image build time; batches frames across streams; CUDA when available) is what the
    # image runs; "mediapipe" (the original TFLite graphs, 478 points with iris) needs the
    # mediapipe package (requirements-mediapipe*.txt), which the host venv has and the image not.
    engine: Literal["mediapipe", "torch"] = "mediapipe"
    torch_weights_dir: str = "/opt/vigil/models/face_mesh_torch"  # convert_tflite.py --out
    device: str = Field(
        "auto", pattern=r"^(auto|cpu|cuda(:\d+)?)$", description="torch engine: auto (CUDA when available), cpu, cuda:N"
    )
    # Torch engine: refined eyes, lips and irises (478 points). The plain mesh's eyelids barely move
    # when the eyes close (EAR 0.30 open vs 0.20 shut on the test photo); refined ones do (README).
    # "attention": MediaPipe's own refine_landmarks=True model (face_landmark_with_attention, its
    # crop ops ported; the same points as the mediapipe engine, within 0.002 px); "iris": the plain
    # mesh + MediaPipe's iris model on eye crops (the legacy iris graph; slower, and its shut eyes
    # read ~1.5x higher, README).
    torch_refine_eyes: bool = True
    torch_refinement: Literal["attention", "iris"] = "attention"
    # The attention mesh ahead-of-time compiled (shared_vision.aot; the image builds the library):
    # its forward pass ~2x faster on CPU, a frame ~1.4x. Used only when the library fits this torch,
    # CPU and weights; else, or when false, TorchScript. pong's model info says which runs
    # (`landmark_runtime`) and why.
    torch_compiled: bool = True

    # ---- eye closure -------------------------------------------------------------------------
    # Before calibration. The 6-point EAR of Soukupová & Čech ("Real-Time Eye Blink Detection using
    # Facial Landmarks", CVWW 2016) is usually cut at 0.2. On the refined eye contours (attention
    # mesh, both engines) measured on 2 real faces (+ mirrored) x 5 head poses x 3 ways of closing
    # (README): open eyes 0.229-0.331, shut eyes 0.034-0.143. 0.19 sits in the middle of that gap
    # (0.186), just under the literature's 0.2.
    default_ear_threshold: float = Field(0.19, gt=0, lt=1)
    # Calibration: the open-eye EAR of this session = this percentile of its face frames in the
    # first `calibration_s` seconds (a high-ish percentile ignores the ~5 % of time spent blinking).
    calibration_s: float = Field(10.0, gt=0)
    calibration_min_frames: int = Field(15, ge=1)
    calibration_percentile: float = Field(70.0, gt=0, lt=100)
    # P80 sense of PERCLOS (Wierwille et al. 1994, FHWA/NHTSA; Dinges & Grace 1998, FHWA-MCRT-98-006):
    # "closed" = eyelid covers >= 80 % of the eye, i.e. the opening is below 20 % of the open one.
    # Landmarks never report EAR 0 for a shut eye (lid thickness, the fit's smoothing), so the
    # opening is measured above a floor: threshold = floor + (1 - 0.8) * (open_ear - floor). The
    # refined contours' shut-eye EAR is 0.11-0.46 of the same face's open EAR (README), so the floor
    # is a fraction of the subject's own open EAR, the measured worst case rounded up: 0.5, giving
    # threshold = 0.6 x open EAR (0.19 for a typical open 0.32).
    perclos_closure_fraction: float = Field(0.8, gt=0, lt=1)
    closed_ear_floor_ratio: float = Field(0.5, ge=0, lt=1)
    # Calibrated thresholds outside this band mean a bad calibration (eyes mostly shut, or a
    # mis-fit mesh); they are clipped into it.
    min_ear_threshold: float = Field(0.1, gt=0, lt=1)
    max_ear_threshold: float = Field(0.3, gt=0, lt=1)

    # ---- windows and episodes ----------------------------------------------------------------
    perclos_window_s: float = Field(60.0, gt=0)  # PERCLOS is defined over 1 min (Dinges & Grace 1998)
    # A frame's state is held until the next frame, but at most this long: a gap in the stream is
    # not counted as closed or open time.
    max_frame_gap_s: float = Field(1.0, gt=0)
    # Blink = closure episode of 50-500 ms (the range; alert blinks last ~100-300 ms and get
    # longer with drowsiness: Caffier et al. 2003, Eur J Appl Physiol 89:319-325).
    blink_min_s: float = Field(0.05, gt=0)
    blink_max_s: float = Field(0.5, gt=0)
    # Microsleep = eyes closed >= 1 s (the definition; cf. Hertig-Godeschalk et al. 2020,
    # Sleep 43(1): microsleep episodes of 1-15 s).
    microsleep_min_s: float = Field(1.0, gt=0)
    # Rates per minute need at least this much observed time, else they are reported as null.
    min_rate_span_s: float = Field(10.0, gt=0)

    # ---- mouth / yawns -----------------------------------------------------------------------
    # MAR on the inner lip contour: closed ~0, speech up to ~0.4, yawns > 0.6 (engineering value used
    # with mesh-based MAR; yawning as a fatigue cue: Abtahi et al. 2014, YawDD, ACM MMSys).
    mouth_open_mar: float = Field(0.6, gt=0)
    yawn_min_s: float = Field(1.5, gt=0)  # a yawn lasts ~4-7 s; speech openings are far shorter

    # ---- head nods ---------------------------------------------------------------------------
    # Nod = pitch at least this many degrees below (chin down) the session's baseline pitch for at
    # least `nod_min_s`; engineering values (head-nodding as drowsiness cue: Ji et al. 2004, IEEE
    # T-VT 53(4)).
    nod_pitch_delta_deg: float = Field(15.0, gt=0)
    nod_min_s: float = Field(0.2, gt=0)

    # ---- gaze and distraction -----------------------------------------------------------------
    # On target = looking (head pose + eye rotation) within these angles of the session's calibrated
    # straight-ahead direction. Engineering values: wider than the 8-degree "road centre" of Victor
    # et al. 2005 (Transp Res F 8:167) because landmark gaze is good to ~5 degrees, not 1.
    gaze_yaw_tolerance_deg: float = Field(15.0, gt=0)
    gaze_pitch_tolerance_deg: float = Field(15.0, gt=0)
    # Distraction = looking away for at least this long: glances off the forward road longer than
    # 2 s about double the near-crash/crash risk (Klauer et al. 2006, 100-Car study, NHTSA DOT HS
    # 810 594; NHTSA's 2013 visual-manual guidelines allow single glances up to 2 s).
    distraction_min_s: float = Field(2.0, gt=0)

    # ---- scoring: (drowsy, very_drowsy) thresholds per cue ----------------------------------
    # PERCLOS >= 0.15 drowsy (the onset commonly used after Wierwille et al. 1994 and Dinges &
    # Grace 1998), >= 0.30 very drowsy (engineering value, twice the onset).
    perclos_drowsy: float = Field(0.15, gt=0, le=1)
    perclos_very_drowsy: float = Field(0.30, gt=0, le=1)
    # Microsleeps in the window: any one means very drowsy.
    microsleeps_drowsy: float = Field(1.0, gt=0)
    microsleeps_very_drowsy: float = Field(1.0, gt=0)
    # Mean blink duration (s): long blinks are an early drowsiness sign (Caffier et al. 2003 report
    # ~0.2 s alert vs longer when drowsy); engineering cut-offs.
    blink_duration_drowsy_s: float = Field(0.3, gt=0)
    blink_duration_very_drowsy_s: float = Field(0.4, gt=0)
    # Yawns and nods per minute (engineering cut-offs).
    yawns_per_min_drowsy: float = Field(2.0, gt=0)
    yawns_per_min_very_drowsy: float = Field(4.0, gt=0)
    nods_per_min_drowsy: float = Field(1.0, gt=0)
    nods_per_min_very_drowsy: float = Field(3.0, gt=0)
    # Observed face time in the window for full confidence.
    confidence_full_evidence_s: float = Field(30.0, gt=0)

    # ---- sessions ----------------------------------------------------------------------------
    # Shared store (shared_protocol.sessions), keyed by (client, session_id): a client beyond its
    # quota loses its own least recently used session; a full store refuses new sessions with
    # `overloaded` instead of evicting another client's.
    max_sessions: int = Field(256, ge=1)
    max_sessions_per_owner: int = Field(16, ge=1)
    session_idle_ttl_s: float = Field(300.0, gt=0)  # server-clock idle time before a session is dropped

    @model_validator(mode="after")
    def _ordered(self) -> FatigueSettings:
        pairs = [
            ("blink_min_s", "blink_max_s"),
            ("min_ear_threshold", "max_ear_threshold"),
            ("perclos_drowsy", "perclos_very_drowsy"),
            ("microsleeps_drowsy", "microsleeps_very_drowsy"),
            ("blink_duration_drowsy_s", "blink_duration_very_drowsy_s"),
            ("yawns_per_min_drowsy", "yawns_per_min_very_drowsy"),
            ("nods_per_min_drowsy", "nods_per_min_very_drowsy"),
        ]
        for low, high in pairs:
            if getattr(self, low) > getattr(self, high):
                raise ValueError(f"{low} must not exceed {high}")
        if self.engine == "torch" and self.face_detection_model != 0:
            raise ValueError("face_detection_model: the torch engine has the short-range detector (0) only")
        if self.blink_max_s > self.microsleep_min_s:
            raise ValueError("blink_max_s must not exceed microsleep_min_s")
        return self
