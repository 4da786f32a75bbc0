"""MediaPipe Face Mesh ported to PyTorch: the batched landmark engine.

The converter, graph runtime and face detector (anchors, decoding, NMS, letterbox) are
shared_vision's, shared with the emotion service; `sources` and `tflite_convert` here re-export
them for older imports. Submodules are imported explicitly (nothing here): the converter runs in
a builder stage without torch, the engine at run time without mediapipe.
"""
