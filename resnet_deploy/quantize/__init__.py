"""INT8 post-training quantization to Q/DQ ONNX: calibration (ONNX Runtime's calibrators),
TensorRT-style Q/DQ placement, ONNX Runtime's CPU form, and a content-addressed calibration cache."""
