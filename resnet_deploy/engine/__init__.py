"""TensorRT and TensorRT-RTX engines from our ONNX artifacts (``resnet-deploy build-engine``).

Modules: ``backends`` finds what is installed, ``options`` parses and checks the build options,
``network`` holds the TensorRT API calls both backends share, ``progress`` turns TensorRT's progress
monitor into bars, ``sidecar`` writes the JSON that travels with an engine, and ``build`` ties them
together. TensorRT modules are imported only inside these functions.
"""
