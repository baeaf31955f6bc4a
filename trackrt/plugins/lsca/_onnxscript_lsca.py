"""The onnxscript bodies of `trackrt::LocalStridedCrossAttention` (imported lazily: needs onnxscript).

Semantics are DESIGN §4.1/§5 and `reference.lsca_reference`; see `onnx_function` for how they are
attached. Two formulations of the same op: `gathered` (each query against its own w+1 keys, any
centres) and `blocked` (blocks of `FUNCTION_BLOCK` consecutive queries against the one key range
their windows cover; needs non-decreasing centres). The op's body picks `blocked` when the centres
are non-decreasing and that range stays short (at most `FUNCTION_SPAN_FACTOR`·(w+1) +
`FUNCTION_BLOCK` keys), as for the encoders' sliding window, and `gathered` otherwise.
"""

# No `from __future__ import annotations`: onnxscript reads the attribute annotations at runtime.
from onnxscript import BOOL, FLOAT, INT64, script
from onnxscript import opset18 as op
from onnxscript.values import Opset

from trackrt.plugins.lsca.onnx_function import FUNCTION_BLOCK as BLOCK
from trackrt.plugins.lsca.onnx_function import FUNCTION_SPAN_FACTOR as SPAN_FACTOR

trackrt_opset = Opset("trackrt", 1)
BLOCK_LAST = BLOCK - 1  # onnxscript takes module constants as attribute values, not expressions


@script(trackrt_opset, default_opset=op)
def LocalStridedCrossAttentionGathered(
    query, key, value, centers, key_lengths, window: int, wrap: int, scale: float
):
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


@script(trackrt_opset, default_opset=op)
def LocalStridedCrossAttentionBlocked(
    query, key, value, centers, key_lengths, window: int, wrap: int, scale: float
):
    """Blocks of BLOCK queries (non-decreasing centres) against their common key range; fp32 softmax."""
    q = op.Cast(query, to=FLOAT.dtype)
    k = op.Cast(key, to=FLOAT.dtype)
    v = op.Cast(value, to=FLOAT.dtype)
    batch = op.Shape(query, start=0, end=1)
    heads = op.Shape(query, start=1, end=2)
    num_queries = op.Shape(query, start=2, end=3)
    num_keys = op.Shape(key, start=2, end=3)
    head_dim = op.Shape(query, start=3, end=4)
    one = op.Constant(value_int=1)
    zero = op.Constant(value_int=0)
    block = op.Constant(value_ints=[BLOCK])

    # Pad Q to whole blocks: zero queries, centres repeated from the last one (so still non-decreasing).
    num_blocks = op.Div(op.Sub(op.Add(num_queries, block), one), block)
    pad = op.Sub(op.Mul(num_blocks, block), num_queries)
    lengths = op.Cast(key_lengths, to=INT64.dtype)
    length_b1 = op.Unsqueeze(lengths, op.Constant(value_ints=[1]))
    center = op.Min(op.Cast(centers, to=INT64.dtype), op.Sub(length_b1, one))
    center = op.Pad(center, op.Concat(op.Constant(value_ints=[0, 0, 0]), pad, axis=0), mode="edge")
    q = op.Pad(q, op.Concat(op.Constant(value_ints=[0, 0, 0, 0, 0, 0]), pad, op.Constant(value_ints=[0]),
                            axis=0))
    block_shape = op.Concat(batch, num_blocks, block, axis=0)
    center = op.Reshape(center, block_shape)  # [B, nb, BLOCK]

    half = op.Div(op.Constant(value_int=window), op.Constant(value_int=2))
    first = op.Slice(center, op.Constant(value_ints=[0]), op.Constant(value_ints=[1]),
                     op.Constant(value_ints=[2]))
    last = op.Slice(center, op.Constant(value_ints=[-1]), op.Constant(value_ints=[BLOCK]),
                    op.Constant(value_ints=[2]))
    widest = op.ReduceMax(op.Sub(last, first), keepdims=0)
    span = op.Add(widest, op.Add(op.Mul(half, op.Constant(value_int=2)), one))
    key_index = op.Add(op.Sub(first, half), op.Range(zero, span, one))  # [B, nb, L]
    offset = op.Sub(op.Unsqueeze(key_index, op.Constant(value_ints=[2])),
                    op.Unsqueeze(center, op.Constant(value_ints=[3])))  # [B, nb, BLOCK, L]
    length_b111 = op.Unsqueeze(lengths, op.Constant(value_ints=[1, 2, 3]))
    in_window = op.LessOrEqual(op.Abs(offset), half)
    wrapped_ok = op.Less(op.Add(offset, half), length_b111)
    key_index_b1111 = op.Unsqueeze(key_index, op.Constant(value_ints=[2]))
    plain_ok = op.And(op.GreaterOrEqual(key_index_b1111, zero), op.Less(key_index_b1111, length_b111))
    is_wrap = op.Cast(op.Constant(value_int=wrap), to=BOOL.dtype)
    allowed = op.And(in_window, op.Or(op.And(is_wrap, wrapped_ok), op.And(op.Not(is_wrap), plain_ok)))
    length_b11 = op.Unsqueeze(lengths, op.Constant(value_ints=[1, 2]))
    wrapped_index = op.Mod(key_index, length_b11)
    plain_index = op.Max(op.Min(key_index, op.Sub(num_keys, one)), zero)
    gather_index = op.Where(is_wrap, wrapped_index, plain_index)

    batch_range = op.Range(zero, op.Squeeze(batch), one)
    head_range = op.Range(zero, op.Squeeze(heads), one)
    batch_head = op.Add(op.Mul(op.Unsqueeze(batch_range, op.Constant(value_ints=[1])), heads), head_range)
    row_base = op.Mul(batch_head, num_keys)
    rows = op.Add(op.Unsqueeze(row_base, op.Constant(value_ints=[2, 3])),
                  op.Unsqueeze(gather_index, op.Constant(value_ints=[1])))  # [B, H, nb, L]
    flat_shape = op.Concat(op.Constant(value_ints=[-1]), head_dim, axis=0)
    block_keys = op.Gather(op.Reshape(k, flat_shape), rows, axis=0)  # [B, H, nb, L, D]
    block_values = op.Gather(op.Reshape(v, flat_shape), rows, axis=0)

    default_scale = op.Div(op.Constant(value_float=1.0), op.Sqrt(op.Cast(head_dim, to=FLOAT.dtype)))
    given_scale = op.Constant(value_float=scale)
    use_default = op.Equal(given_scale, op.Constant(value_float=0.0))
    effective_scale = op.Where(use_default, default_scale, given_scale)
    q_blocks = op.Reshape(q, op.Concat(batch, heads, num_blocks, block, head_dim, axis=0))
    scores = op.Mul(op.MatMul(q_blocks, op.Transpose(block_keys, perm=[0, 1, 2, 4, 3])), effective_scale)
    masked = op.Where(op.Unsqueeze(allowed, op.Constant(value_ints=[1])), scores,
                      op.Constant(value_float=-1.0e30))
    out = op.MatMul(op.Softmax(masked, axis=-1), block_values)  # [B, H, nb, BLOCK, D]
    out = op.Reshape(out, op.Concat(batch, heads, op.Constant(value_ints=[-1]), head_dim, axis=0))
    out = op.Slice(out, op.Constant(value_ints=[0]), num_queries, op.Constant(value_ints=[2]))
    return op.CastLike(out, query)


@script(trackrt_opset, default_opset=op)
def LocalStridedCrossAttention(query, key, value, centers, key_lengths, window: int, wrap: int, scale: float):
    """`blocked` for non-decreasing centres whose blocks span few keys, else `gathered`."""
    one = op.Constant(value_int=1)
    lengths = op.Cast(key_lengths, to=INT64.dtype)
    length_b1 = op.Unsqueeze(lengths, op.Constant(value_ints=[1]))
    center = op.Min(op.Cast(centers, to=INT64.dtype), op.Sub(length_b1, one))
    num_queries = op.Shape(centers, start=1, end=2)
    axis_1 = op.Constant(value_ints=[1])
    steps = op.Sub(op.Slice(center, axis_1, num_queries, axis_1),
                   op.Slice(center, op.Constant(value_ints=[0]), op.Sub(num_queries, axis_1), axis_1))
    decreasing = op.ReduceSum(op.Cast(op.Less(steps, op.Constant(value_int=0)), to=INT64.dtype), keepdims=0)
    starts = op.Range(op.Constant(value_int=0), op.Squeeze(num_queries), op.Constant(value_int=BLOCK))
    ends = op.Min(op.Add(starts, op.Constant(value_int=BLOCK_LAST)), op.Sub(num_queries, one))
    block_span = op.ReduceMax(op.Sub(op.Gather(center, ends, axis=1), op.Gather(center, starts, axis=1)),
                              keepdims=0)
    limit = op.Add(op.Mul(op.Constant(value_int=SPAN_FACTOR), op.Add(op.Constant(value_int=window), one)),
                   op.Constant(value_int=BLOCK))
    short = op.LessOrEqual(op.Add(block_span, op.Add(op.Constant(value_int=window), one)), limit)
    if op.And(op.Equal(decreasing, op.Constant(value_int=0)), short):
        out = LocalStridedCrossAttentionBlocked(query, key, value, centers, key_lengths,
                                                window=window, wrap=wrap, scale=scale)
    else:
        out = LocalStridedCrossAttentionGathered(query, key, value, centers, key_lengths,
                                                 window=window, wrap=wrap, scale=scale)
    return out
