"""TensorRT plugin `trackrt::LocalStridedCrossAttention` v1 through `tensorrt.plugin` (TensorRT >= 10.9).

Inputs query/key/value [B, H, L, D] (FP32, FP16 or BF16, all alike), centers [B, Q] and key_lengths [B]
(INT32); attributes window, wrap, scale as in DESIGN §5.  The AOT implementation compiles the Triton
kernel to PTX with symbolic grid sizes, so serialized engines run without Python; the JIT `impl` is
the fallback (needs torch and Triton at run time).  The ONNX node's domain `trackrt` gives the plugin
namespace (TensorRT >= 10.10); set `BuilderFlag.PREFER_AOT_PYTHON_PLUGINS` to pick the AOT path.
"""

# No `from __future__ import annotations`, and typing.Tuple/List/Union rather than builtins:
# tensorrt.plugin validates the annotations at runtime against the typing forms of its docs and samples.
# ruff: noqa: UP006, UP007, UP035
from trackrt.plugins.lsca.kernel_config import TACTICS, config_for_tactic
from trackrt.plugins.lsca.reference import LSCA_DOMAIN, LSCA_OP_TYPE, LSCA_VERSION

PLUGIN_ID = f"{LSCA_DOMAIN}::{LSCA_OP_TYPE}"
PLUGIN_VERSION = str(LSCA_VERSION)
_IO_TYPES = "FP32|FP16|BF16, FP32|FP16|BF16, FP32|FP16|BF16, INT32, INT32, FP32|FP16|BF16"
_MISSING = ("The LSCA TensorRT plugin needs TensorRT >= 10.9 with its Python plugin API (tensorrt.plugin): "
            "pip install 'trackrt[tensorrt]'")
_registered: list[bool] = []


def register_lsca_plugin() -> None:
    """Register the plugin with TensorRT's plugin registry once per process (safe to call again)."""
    if _registered:
        return
    try:
        import tensorrt.plugin as trtp
    except ImportError as exc:
        raise ImportError(_MISSING) from exc
    _define_plugin(trtp)
    _registered.append(True)


def add_plugin_namespace(model: object) -> object:
    """Add `plugin_namespace="trackrt"` to the LSCA nodes of an ONNX model, in place.

    TensorRT >= 10.10 takes the namespace from the node's domain; 10.9's ONNX parser needs this attribute.
    """
    import onnx

    from trackrt.plugins.lsca.onnx_function import is_lsca_node

    for node in model.graph.node:
        if is_lsca_node(node) and not any(a.name == "plugin_namespace" for a in node.attribute):
            node.attribute.append(onnx.helper.make_attribute("plugin_namespace", LSCA_DOMAIN))
    return model


def _kernel_dtype(trt_dtype: object) -> str:
    """'fp32' | 'fp16' | 'bf16' for a TensorRT DataType."""
    import tensorrt as trt

    names = {trt.float32: "fp32", trt.float16: "fp16", trt.bfloat16: "bf16"}
    if trt_dtype not in names:
        raise TypeError(f"LSCA plugin: query/key/value must be FP32, FP16 or BF16, got {trt_dtype}")
    return names[trt_dtype]


def _static_head_dim(query: object) -> int:
    head_dim = query.shape_expr[3]
    if not head_dim.is_constant:
        raise ValueError("LSCA plugin: the head dimension (query axis 3) must be static to compile the "
                         "kernel")
    return int(head_dim.constant_value())


def _define_plugin(trtp: object) -> None:
    """Declare register / autotune / aot_impl / impl for the plugin id."""
    from typing import List, Tuple, Union

    @trtp.register(PLUGIN_ID)
    def lsca_descriptor(query: trtp.TensorDesc, key: trtp.TensorDesc, value: trtp.TensorDesc,
                        centers: trtp.TensorDesc, key_lengths: trtp.TensorDesc, window: int, wrap: int,
                        scale: float) -> trtp.TensorDesc:
        if window < 0 or window % 2:
            raise ValueError(f"LSCA plugin: window must be a non-negative even int, got {window}")
        if wrap not in (0, 1):
            raise ValueError(f"LSCA plugin: wrap must be 0 or 1, got {wrap}")
        if key.dtype != query.dtype or value.dtype != query.dtype:
            raise TypeError(f"LSCA plugin: key/value dtypes {key.dtype}/{value.dtype} differ from query "
                            f"{query.dtype}")
        return query.like()

    @trtp.autotune(PLUGIN_ID)
    def lsca_autotune(query: trtp.TensorDesc, key: trtp.TensorDesc, value: trtp.TensorDesc,
                      centers: trtp.TensorDesc, key_lengths: trtp.TensorDesc,
                      outputs: Tuple[trtp.TensorDesc]) -> List[trtp.AutoTuneCombination]:
        return [trtp.AutoTuneCombination(_IO_TYPES, "LINEAR", list(TACTICS))]

    @trtp.aot_impl(PLUGIN_ID)
    def lsca_aot(query: trtp.TensorDesc, key: trtp.TensorDesc, value: trtp.TensorDesc,
                 centers: trtp.TensorDesc, key_lengths: trtp.TensorDesc, window: int, wrap: int, scale: float,
                 outputs: Tuple[trtp.TensorDesc], tactic: int
                 ) -> Tuple[Union[str, bytes], Union[str, bytes], trtp.KernelLaunchParams, trtp.SymExprs]:
        from trackrt.plugins.lsca.triton_kernel import compile_lsca_ptx

        config = TACTICS.get(tactic, TACTICS[1])
        dtype, head_dim = _kernel_dtype(query.dtype), _static_head_dim(query)
        kernel = compile_lsca_ptx(dtype, head_dim, window, wrap, scale, config)
        batch, heads, num_queries = query.shape_expr[0], query.shape_expr[1], query.shape_expr[2]
        launch = trtp.KernelLaunchParams()
        launch.grid_x = trtp.cdiv(num_queries, config.block_q)
        launch.grid_y = heads
        launch.grid_z = batch
        launch.block_x = kernel.num_warps * 32
        launch.shared_mem = kernel.shared_mem
        scalars = trtp.SymIntExprs(3)
        scalars[0] = trtp.SymInt32(heads)
        scalars[1] = trtp.SymInt32(num_queries)
        scalars[2] = trtp.SymInt32(key.shape_expr[2])
        return kernel.name, kernel.ptx, launch, scalars

    @trtp.impl(PLUGIN_ID)
    def lsca_jit(query: trtp.Tensor, key: trtp.Tensor, value: trtp.Tensor, centers: trtp.Tensor,
                 key_lengths: trtp.Tensor, window: int, wrap: int, scale: float, outputs: Tuple[trtp.Tensor],
                 stream: int, tactic: int) -> None:
        import torch

        from trackrt.plugins.lsca.triton_ops import launch_lsca_kernel

        q, k, v, c, lengths, out = (torch.as_tensor(t, device="cuda")
                                    for t in (query, key, value, centers, key_lengths, outputs[0]))
        config = config_for_tactic(tactic, q.shape[2], k.shape[2], window)
        with torch.cuda.stream(torch.cuda.ExternalStream(stream)):
            launch_lsca_kernel(q, k, v, c, lengths, window, wrap, scale, out, config)
