"""Serving: a Triton model repository from any artifact (``triton_repository``), a real Triton server
with our runner behind it (``server``, through PyTriton), a load test through Triton's own client
(``load_test``), and DeepStream's nvinfer config (``deepstream_config``).

Nothing here imports tritonclient, PyTriton or a runtime at import time.
"""
