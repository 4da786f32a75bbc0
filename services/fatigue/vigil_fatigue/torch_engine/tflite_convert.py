"""Moved to shared_vision.tflite_convert (one copy for fatigue and emotion); re-exported for old imports."""

from shared_vision.tflite_convert import (
    FORMAT_VERSION,
    PROGRAM_METADATA_KEY,
    ConversionError,
    ConvertedGraph,
    convert_tflite,
    convert_tflite_bytes,
    same_padding,
    save_converted,
)

__all__ = [
    "FORMAT_VERSION",
    "PROGRAM_METADATA_KEY",
    "ConversionError",
    "ConvertedGraph",
    "convert_tflite",
    "convert_tflite_bytes",
    "same_padding",
    "save_converted",
]
