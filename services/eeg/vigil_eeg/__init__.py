"""vigil EEG backend: streaming EEG chunks -> MNE band powers, drowsiness indices and a fatigue level."""

__version__ = "1.0.0"
