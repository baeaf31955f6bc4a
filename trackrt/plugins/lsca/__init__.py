"""`trackrt::LocalStridedCrossAttention` v1: numpy reference, Triton kernel, TensorRT plugin, ORT function.

Only the numpy reference is imported here; the other implementations import torch, triton, tensorrt or
onnxscript lazily from their own modules.
"""

from trackrt.plugins.lsca.reference import (
    LSCA_DOMAIN,
    LSCA_OP_TYPE,
    LSCA_VERSION,
    lsca_reference,
    strided_centers_np,
    window_mask_np,
)

__all__ = [
    "LSCA_DOMAIN",
    "LSCA_OP_TYPE",
    "LSCA_VERSION",
    "lsca_reference",
    "strided_centers_np",
    "window_mask_np",
]
