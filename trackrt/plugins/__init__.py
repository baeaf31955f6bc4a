"""The LSCA op: numpy reference, Triton kernel, TensorRT plugin and ONNX Runtime implementation."""
