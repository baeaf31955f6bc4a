"""The onnxscript body of `trackrt::LocalStridedCrossAttention` (imported lazily: needs onnxscript).

Semantics are DESIGN §4.1/§5 and `reference.lsca_reference`; see `onnx_function` for how it is attached.
"""

# No `from __future__ import annotations`: onnxscript reads the attribute annotations at runtime.
from onnxscript import BOOL, FLOAT, INT64, script
from onnxscript import opset18 as op
from onnxscript.values import Opset

trackrt_opset = Opset("trackrt", 1)


@script(trackrt_opset, default_opset=op)
def LocalStridedCrossAttention(query, key, value, centers, key_lengths, window: int, wrap: int, scale: float):
    """Each query against its w+1 gathered window keys; masked softmax in fp32; output in query's type."""
    q = op.Cast(query, to=FLOAT.dtype)
    k = op.Cast(key, to=FLOAT.dtype)
    v = op.Cast(value, to=FLOAT.dtype)
    batch = op.Shape(query, start=0, end=1)
    heads = op.Shape(query, start=1, end=2)
    num_keys = op.Shape(key, start=2, end=3)
    head_dim = op.Shape(query, start=3, end=4)

    half = op.Div(op.Constant(value_int=window), op.Constant(value_int=2))
    offsets = op.Range(op.Neg(half), op.Add(half, op.Constant(value_int=1)), op.Constant(value_int=1))
    lengths = op.Cast(key_lengths, to=INT64.dtype)
    length_b1 = op.Unsqueeze(lengths, op.Constant(value_ints=[1]))
    length_b11 = op.Unsqueeze(lengths, op.Constant(value_ints=[1, 2]))
    one = op.Constant(value_int=1)
    zero = op.Constant(value_int=0)
    center = op.Min(op.Cast(centers, to=INT64.dtype), op.Sub(length_b1, one))
    index = op.Add(op.Unsqueeze(center, op.Constant(value_ints=[2])), offsets)

    wrapped_index = op.Mod(index, length_b11)
    wrapped_ok = op.Less(op.Add(offsets, half), length_b11)
    plain_ok = op.And(op.GreaterOrEqual(index, zero), op.Less(index, length_b11))
    plain_index = op.Max(op.Min(index, op.Sub(num_keys, one)), zero)
    is_wrap = op.Cast(op.Constant(value_int=wrap), to=BOOL.dtype)
    window_index = op.Where(is_wrap, wrapped_index, plain_index)
    allowed = op.Or(op.And(is_wrap, wrapped_ok), op.And(op.Not(is_wrap), plain_ok))  # no bool Where in ORT

    batch_range = op.Range(zero, op.Squeeze(batch), one)
    head_range = op.Range(zero, op.Squeeze(heads), one)
    batch_head = op.Add(op.Mul(op.Unsqueeze(batch_range, op.Constant(value_ints=[1])), heads), head_range)
    row_base = op.Mul(batch_head, num_keys)
    rows = op.Add(op.Unsqueeze(row_base, op.Constant(value_ints=[2, 3])),
                  op.Unsqueeze(window_index, op.Constant(value_ints=[1])))
    flat_shape = op.Concat(op.Constant(value_ints=[-1]), head_dim, axis=0)
    window_keys = op.Gather(op.Reshape(k, flat_shape), rows, axis=0)
    window_values = op.Gather(op.Reshape(v, flat_shape), rows, axis=0)

    default_scale = op.Div(op.Constant(value_float=1.0), op.Sqrt(op.Cast(head_dim, to=FLOAT.dtype)))
    given_scale = op.Constant(value_float=scale)
    use_default = op.Equal(given_scale, op.Constant(value_float=0.0))
    effective_scale = op.Where(use_default, default_scale, given_scale)
    q_rows = op.Unsqueeze(q, op.Constant(value_ints=[3]))
    scores = op.MatMul(q_rows, op.Transpose(window_keys, perm=[0, 1, 2, 4, 3]))
    scores = op.Mul(op.Squeeze(scores, op.Constant(value_ints=[3])), effective_scale)
    masked = op.Where(op.Unsqueeze(allowed, op.Constant(value_ints=[1])), scores,
                      op.Constant(value_float=-1.0e30))
    weights = op.Softmax(masked, axis=-1)
    out = op.MatMul(op.Unsqueeze(weights, op.Constant(value_ints=[3])), window_values)
    return op.CastLike(op.Squeeze(out, op.Constant(value_ints=[3])), query)
