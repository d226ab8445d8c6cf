"""Converting a model to deployable graphs: PyTorch -> ONNX (``export``), checked against PyTorch
(``verify``), and FP32 ONNX -> FP16 ONNX (``fp16``). INT8 is calibration's (``resnet_deploy.quantize``)."""
