"""EEG service settings: the common service settings plus input limits, the MNE pipeline's
parameters and the scoring thresholds.

Sources, lowest priority first (shared_protocol.settings): field defaults, a YAML file (`--config`
or `VIGIL_EEG_CONFIG`), environment variables `VIGIL_EEG_<FIELD>` (e.g. `VIGIL_EEG_LINE_FREQ=60`),
command-line flags `--<field-name>`. Any bad value exits with code 2 naming the setting.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator, model_validator

from shared_protocol.settings import ServiceSettings, service_config

CONFIG_ENV = "VIGIL_EEG_CONFIG"
DEFAULT_PORT = 8769


class EEGSettings(ServiceSettings):
    model_config = service_config("EEG")

    port: int = Field(DEFAULT_PORT, ge=0, le=65535, description="port to bind")

    # ---- input limits ------------------------------------------------------------------------
    min_sfreq: float = Field(80.0, gt=0)  # below this the 1-40 Hz bands cannot be resolved
    max_sfreq: float = Field(4096.0, gt=0)
    max_channels: int = Field(256, ge=1)
    max_chunk_samples: int = Field(16384, ge=1)  # samples per channel in one request
    # (session_id, timestamp and reset_session follow the one rule of shared_protocol.fields.)
    # channels x samples of one window buffer (float64): 2M values = 16 MB per session, so that
    # max_sessions sessions stay within ~1 GB even with many channels at a high rate.
    max_window_values: int = Field(2_000_000, ge=1)

    # ---- windowing ---------------------------------------------------------------------------
    window_s: float = Field(4.0, gt=0)  # the analysed window (the ring buffer holds exactly this)
    # A window shorter than window_s (session start) is analysed once it holds this much, with a
    # lower confidence; below it the reply only reports buffering progress.
    min_window_s: float = Field(2.0, gt=0)
    # A timestamp that differs from the expected one (previous chunk's end) by more than this means
    # lost or reordered data: the buffer is cleared so a window never spans a gap.
    max_timestamp_gap_s: float = Field(1.0, gt=0)
    # What a changed sfreq or channel list within a session does: "error" refuses the chunk
    # (bad_request; send reset_session=true to start over), "reset" restarts the session with a warning.
    on_stream_change: Literal["error", "reset"] = "error"

    # ---- preprocessing (MNE) -----------------------------------------------------------------
    line_freq: float = Field(50.0)  # mains: 50 Hz (EU/Asia) or 60 Hz (Americas)
    notch_width: float = Field(2.0, gt=0)  # Hz, total stop-band width of the IIR notch
    l_freq: float = Field(1.0, gt=0)
    h_freq: float = Field(40.0, gt=0)
    filter_order: int = Field(4, ge=1, le=8)  # Butterworth order (zero-phase: applied twice)
    average_reference: bool = False  # consumer headsets (Emotiv) are already referenced (CMS/DRL)

    # ---- bad channels / artifacts ------------------------------------------------------------
    flat_ptp_uv: float = Field(1.0, ge=0)  # band-passed peak-to-peak below this = flat / disconnected
    # ±150 µV: the usual absolute rejection threshold for scalp EEG epochs (e.g. MNE's tutorials use
    # reject=dict(eeg=150e-6); ERP practice: Luck 2014, ±100-150 µV).
    amplitude_uv: float = Field(150.0, gt=0)
    # Power removed by the notch / power left in 1-40 Hz above this = excessive line noise.
    line_noise_ratio: float = Field(1.0, gt=0)
    min_good_fraction: float = Field(0.5, gt=0, le=1)  # of channels, for a window to enter the baseline

    # ---- spectrum ----------------------------------------------------------------------------
    welch_segment_s: float = Field(2.0, gt=0)  # 2 s segments -> 0.5 Hz resolution, 50 % overlap

    # ---- baseline and scoring ----------------------------------------------------------------
    baseline_windows: int = Field(10, ge=2)  # clean windows that form the session's baseline
    baseline_hop_s: float = Field(1.0, gt=0)  # min. spacing between baseline windows (they overlap)
    # Drowsiness z = mean z-score of the log10 indices θ/β, α/β, (θ+α)/β, (θ+α)/(α+β) against the
    # session baseline. Jap et al. (2009, Expert Syst. Appl. 36:2352; 2011, Biol. Psychol.) found all
    # four rise with driving fatigue, (θ+α)/β most; they give no cut-off, so these are ours:
    # 1 SD above the own alert baseline = drowsy, 2 SD = very drowsy.
    drowsy_z: float = 1.0
    very_drowsy_z: float = 2.0
    # Before the baseline exists, z is taken against a population prior of log10((θ+α)/β) for alert,
    # eyes-open adults (relative θ≈0.2, α≈0.25, β≈0.25 -> ratio ≈ 1.8; spread from our own
    # estimate, not a published norm), and confidence is halved.
    prior_log_ratio_mean: float = 0.25
    prior_log_ratio_std: float = Field(0.25, gt=0)
    prior_confidence_factor: float = Field(0.5, gt=0, le=1)

    # ---- sessions ----------------------------------------------------------------------------
    # Sessions belong to the client connection that made them (shared_protocol.sessions): a full
    # store refuses new sessions with `overloaded` instead of evicting another client's, and a
    # client beyond its own quota loses its own least recently used session.
    max_sessions: int = Field(64, ge=1)  # all clients together
    max_sessions_per_owner: int = Field(16, ge=1)  # per client connection
    session_ttl_s: float = Field(600.0, gt=0)  # idle sessions are dropped after this

    # ---- optional learned model --------------------------------------------------------------
    model_path: str | None = None  # TorchScript module; needs torch installed (not in the image)

    @field_validator("model_path", mode="before")
    @classmethod
    def _empty_path_is_none(cls, value: object) -> object:
        return None if value == "" else value

    @model_validator(mode="after")
    def _check_consistency(self) -> EEGSettings:
        if self.line_freq not in (50.0, 60.0):
            raise ValueError("line_freq must be 50 or 60")
        if not self.l_freq < self.h_freq:
            raise ValueError("l_freq must be below h_freq")
        if self.min_window_s > self.window_s:
            raise ValueError("min_window_s must not exceed window_s")
        if self.min_sfreq > self.max_sfreq:
            raise ValueError("min_sfreq must not exceed max_sfreq")
        if self.very_drowsy_z <= self.drowsy_z:
            raise ValueError("very_drowsy_z must exceed drowsy_z")
        return self
