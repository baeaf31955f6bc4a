"""`trackrt::LocalStridedCrossAttention` v1: numpy reference, Triton kernel, TensorRT plugin, ORT function.

Modules: `reference` (numpy ground truth, imported here), `kernel_config` and `ptx` (pure Python),
`triton_kernel` (needs Triton), `triton_ops` (torch launch + autograd), `tensorrt_plugin`
(`register_lsca_plugin`, needs TensorRT), `onnx_function` (`attach_lsca_function`, needs onnx and
onnxscript).  Only the reference is imported by this package, so it loads without torch.
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
