"""INT8 post-training quantization: an FP32 ONNX and calibration images in, a Q/DQ INT8 ONNX out.

The FP32 model runs in ONNX Runtime and ``ranges.py`` measures its activations: our own TensorRT-style
histograms of |x| with TensorRT's entropy (KL) or a percentile threshold (``trt_entropy.py``), or
running min/max (only the CPU target's percentile uses ONNX Runtime's signed histograms). The ranges
become TensorRT's explicit Q/DQ placement (``qdq_tensorrt.py``) or ONNX Runtime's uint8 CPU form
(``cpu_qdq.py``), and are kept in a content-addressed cache that also writes TensorRT's calibration
cache file (``cache.py``). ``calibrate.py`` composes these."""
