"""MediaPipe models on torch, shared by the fatigue and emotion images.

- build time (no torch, no mediapipe): `sources` reads .tflite files out of the mediapipe wheel,
  `tflite_convert` turns them into safetensors, `convert` is the command line;
- run time (no tflite, no mediapipe): `graph` runs a converted model as a torch module, `runtime`
  picks the device and traces it, `anchors`/`detection`/`roi` reproduce MediaPipe's SSD decoding,
  weighted NMS and letterboxing, `blazeface` is the batched short-range face detector.

Submodules are imported explicitly (nothing here), so each stage imports only what it has.
"""
