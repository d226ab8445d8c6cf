"""Turn one ONNX graph into a TensorRT or TensorRT-RTX engine plus its sidecar record.

Modules: ``options`` parses and checks the build options, ``network`` holds the TensorRT API calls
both flavours share (which flavour: ``resnet_deploy.trt``), ``progress`` turns TensorRT's progress
monitor into bars, ``implicit_int8`` feeds a calibration cache to the weakly typed builders,
``build_gpu`` names the GPU a full-TensorRT engine is built for, and ``build`` ties them together.
Converting or calibrating the graph on the way is ``resnet_deploy.pipeline``'s job. TensorRT
modules are imported only when a flavour is chosen.
"""
