"""The runtime wing: face detection, the ONNX emotion classifier, tracking and video (no torch)."""
