"""The TensorRT plugin: one-op engines from the bare ONNX node, AOT and JIT, serialised and reloaded.

Needs the full TensorRT (builder + tensorrt.plugin >= 10.9), a CUDA GPU, torch with CUDA and Triton.
"""

from __future__ import annotations

import numpy as np
import pytest

pytestmark = pytest.mark.tensorrt

trt = pytest.importorskip("tensorrt")
pytest.importorskip("tensorrt.plugin")
pytest.importorskip("triton")
onnx = pytest.importorskip("onnx")
torch = pytest.importorskip("torch")
if not hasattr(trt, "Builder") or not torch.cuda.is_available():
    pytest.skip("needs TensorRT's builder and a CUDA GPU", allow_module_level=True)

from trackrt.plugins.lsca.onnx_function import make_lsca_model  # noqa: E402
from trackrt.plugins.lsca.reference import lsca_reference, strided_centers_np  # noqa: E402
from trackrt.plugins.lsca.tensorrt_plugin import add_plugin_namespace, register_lsca_plugin  # noqa: E402

LOGGER = trt.Logger(trt.Logger.WARNING)
TORCH_DTYPES = {onnx.TensorProto.FLOAT: torch.float32, onnx.TensorProto.FLOAT16: torch.float16}
HEADS, HEAD_DIM = 4, 32


def trt_version() -> tuple[int, int]:
    major, minor = trt.__version__.split(".")[:2]
    return int(major), int(minor)


def build_engine(onnx_dtype: int, window: int, wrap: int, aot: bool) -> bytes:
    """Parse a one-op model (bare custom node, dynamic B/Q/N) and build a serialized engine."""
    register_lsca_plugin()
    model = make_lsca_model(onnx_dtype, window, wrap, head_dim=HEAD_DIM)
    if trt_version() < (10, 10):
        add_plugin_namespace(model)
    builder = trt.Builder(LOGGER)
    flags = 0
    if hasattr(trt.NetworkDefinitionCreationFlag, "STRONGLY_TYPED"):
        flags |= 1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED)
    network = builder.create_network(flags)
    parser = trt.OnnxParser(network, LOGGER)
    if not parser.parse(model.SerializeToString()):
        raise AssertionError("; ".join(str(parser.get_error(i)) for i in range(parser.num_errors)))
    config = builder.create_builder_config()
    flag = trt.BuilderFlag.PREFER_AOT_PYTHON_PLUGINS if aot else trt.BuilderFlag.PREFER_JIT_PYTHON_PLUGINS
    config.set_flag(flag)
    profile = builder.create_optimization_profile()
    for name, (low, opt, high) in {
        "query": ((1, HEADS, 1, HEAD_DIM), (1, HEADS, 1000, HEAD_DIM), (2, HEADS, 4000, HEAD_DIM)),
        "key": ((1, HEADS, 1, HEAD_DIM), (1, HEADS, 9000, HEAD_DIM), (2, HEADS, 30000, HEAD_DIM)),
        "value": ((1, HEADS, 1, HEAD_DIM), (1, HEADS, 9000, HEAD_DIM), (2, HEADS, 30000, HEAD_DIM)),
        "centers": ((1, 1), (1, 1000), (2, 4000)),
        "key_lengths": ((1,), (1,), (2,)),
    }.items():
        profile.set_shape(name, low, opt, high)
    config.add_optimization_profile(profile)
    engine = builder.build_serialized_network(network, config)
    assert engine is not None, "engine build failed"
    return bytes(engine)


def run_engine(engine_bytes: bytes, feeds: dict[str, torch.Tensor]) -> torch.Tensor:
    """Deserialize in a fresh runtime and run once."""
    engine = trt.Runtime(LOGGER).deserialize_cuda_engine(engine_bytes)
    context = engine.create_execution_context()
    for name, tensor in feeds.items():
        context.set_input_shape(name, tuple(tensor.shape))
        context.set_tensor_address(name, tensor.data_ptr())
    out = torch.empty_like(feeds["query"])
    context.set_tensor_address("output", out.data_ptr())
    stream = torch.cuda.current_stream()
    assert context.execute_async_v3(stream.cuda_stream)
    stream.synchronize()
    return out


def feeds_for(b, nq, n, dtype, seed, lengths):
    g = torch.Generator(device="cuda").manual_seed(seed)
    q, k, v = (torch.randn(b, HEADS, s, HEAD_DIM, generator=g, device="cuda").to(dtype) for s in (nq, n, n))
    centers = np.broadcast_to(strided_centers_np(nq, n), (b, nq)).astype(np.int32)
    centers = torch.from_numpy(centers.copy()).cuda()
    kl = (torch.randint(n // 2, n + 1, (b,), generator=g, device="cuda") if lengths
          else torch.full((b,), n, device="cuda")).to(torch.int32)
    return {"query": q, "key": k, "value": v, "centers": centers, "key_lengths": kl}


def reference(feeds, window, wrap):
    q, k, v = (feeds[name].double().cpu().numpy() for name in ("query", "key", "value"))
    out = lsca_reference(q, k, v, feeds["centers"].cpu().numpy(), window, wrap, 0.0,
                         feeds["key_lengths"].cpu().numpy())
    return torch.from_numpy(out)


@pytest.mark.parametrize("aot", [True, False])
@pytest.mark.parametrize(("onnx_dtype", "tol"), [(onnx.TensorProto.FLOAT, 1e-5),
                                                 (onnx.TensorProto.FLOAT16, 2e-3)])
@pytest.mark.parametrize(("window", "wrap"), [(64, 1), (128, 0)])
def test_engine_matches_reference(aot, onnx_dtype, tol, window, wrap):
    engine = build_engine(onnx_dtype, window, wrap, aot)
    for b, nq, n, lengths in [(1, 1111, 10000, False), (2, 333, 3001, True), (1, 1, 7, False)]:
        feeds = feeds_for(b, nq, n, TORCH_DTYPES[onnx_dtype], seed=nq, lengths=lengths)
        out = run_engine(engine, feeds)
        torch.testing.assert_close(out.double().cpu(), reference(feeds, window, wrap), atol=tol, rtol=tol)


def test_register_is_idempotent():
    register_lsca_plugin()
    register_lsca_plugin()
