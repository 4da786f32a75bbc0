"""MediaPipe Face Mesh ported to PyTorch: build-time TFLite converter and the batched engine.

Submodules are imported explicitly (nothing here): the converter (tflite_convert, sources) runs in
a builder stage without torch, the engine (engine, graph, runtime) at run time without mediapipe.
"""
