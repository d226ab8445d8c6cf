"""TensorRT itself, for the engine builder and the engine runner alike: which flavour is installed
(full TensorRT or TensorRT-RTX, ``flavours``) and the process's logger (``logger``). Imports
tensorrt only when a flavour is chosen."""
