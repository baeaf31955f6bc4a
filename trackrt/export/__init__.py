"""ONNX export, graph checks and validation against PyTorch."""
