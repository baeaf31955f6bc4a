"""ONNX operators that TensorRT's ONNX parser imports, per TensorRT major version (data, no logic).

Source for 10.x: onnx-tensorrt `docs/operators.md` as of TensorRT 10.15 ("TensorRT 10.15 supports
operators in the inclusive range of opset 9 to opset 24"), https://github.com/onnx/onnx-tensorrt/blob/
main/docs/operators.md — every operator marked "Y" in its support matrix.
Source for 11.x: the same table plus the parser changes listed in the TensorRT 11.0 release
(https://github.com/NVIDIA/TensorRT/releases/tag/v11.0: "Added support for Swish operator") and
11.5 (https://github.com/NVIDIA/TensorRT/releases/tag/v11.5: "Added support for ONNX opset 25"), and
NVIDIA's ONNX opset guide for 11.x (maximum opset 25, minimum 9):
https://docs.nvidia.com/deeplearning/tensorrt/latest/reference/onnx-opset-guide.html
Operators marked "N" there (NonZero is "Y"; Unique, Compress, Sequence*, Optional*, String*, Bitwise*,
…) are absent here; a graph using an absent operator needs a plugin or a rewrite.
"""

from __future__ import annotations

SUPPORTED_OPS_TRT10: frozenset[str] = frozenset(
    """
    Abs Acos Acosh Add And ArgMax ArgMin Asin Asinh Atan Atanh Attention AveragePool BatchNormalization
    BlackmanWindow Cast CastLike Ceil Celu Clip Concat Constant ConstantOfShape Conv ConvTranspose Cos
    Cosh CumSum DeformConv DepthToSpace DequantizeLinear Div Dropout Einsum Elu Equal Erf Exp Expand
    EyeLike Flatten Floor Gather GatherElements GatherND Gelu Gemm GlobalAveragePool GlobalLpPool
    GlobalMaxPool Greater GreaterOrEqual GridSample GroupNormalization GRU HammingWindow HannWindow
    HardSigmoid HardSwish Hardmax Identity If ImageScaler InstanceNormalization IsInf IsNaN
    LayerNormalization LeakyRelu Less LessOrEqual Log LogSoftmax Loop LRN LSTM LpNormalization LpPool
    MatMul Max MaxPool Mean MeanVarianceNormalization Min Mish Mod Mul Neg NonMaxSuppression NonZero Not
    OneHot Or Pad ParametricSoftplus Pow PRelu QuantizeLinear RandomNormal RandomNormalLike RandomUniform
    RandomUniformLike Range Reciprocal ReduceL1 ReduceL2 ReduceLogSum ReduceLogSumExp ReduceMax
    ReduceMean ReduceMin ReduceProd ReduceSum ReduceSumSquare Relu Reshape Resize ReverseSequence
    RMSNormalization RNN RoiAlign RotaryEmbedding Round STFT ScaledTanh Scan Scatter ScatterElements
    ScatterND Selu Shape Shrink Sigmoid Sign Sin Sinh Size Slice Softmax Softplus Softsign SpaceToDepth
    Split Sqrt Squeeze Sub Sum Tan Tanh TensorScatter ThresholdedRelu Tile TopK Transpose Trilu
    Unsqueeze Upsample Where Xor
    """.split()
)

SUPPORTED_OPS_TRT11: frozenset[str] = SUPPORTED_OPS_TRT10 | {"Swish"}

SUPPORTED_OPS: dict[str, frozenset[str]] = {"10.x": SUPPORTED_OPS_TRT10, "11.x": SUPPORTED_OPS_TRT11}

OPSET_RANGE: dict[str, tuple[int, int]] = {"10.x": (9, 24), "11.x": (9, 25)}

# operators.md restriction: TopK's `K` must be a build-time constant below 3840 and `sorted` must be 1.
TOPK_MAX_K = 3840

# Ops whose outputs have data-dependent shapes: fine as data, but a shape input fed from them needs
# TensorRT's output allocator (and rules out CUDA graphs) or is refused outright.
DATA_DEPENDENT_SHAPE_OPS: frozenset[str] = frozenset({"NonZero", "NonMaxSuppression", "Unique", "Compress"})

# (op_type, input index) pairs whose value decides an output shape in TensorRT.
SHAPE_INPUTS: dict[str, tuple[int, ...]] = {
    "Reshape": (1,),
    "Expand": (1,),
    "ConstantOfShape": (0,),
    "Tile": (1,),
    "Range": (0, 1, 2),
    "Slice": (1, 2, 3, 4),
    "TopK": (1,),
    "Pad": (1,),
    "Resize": (3,),
    "OneHot": (1,),
    "Squeeze": (1,),
    "Unsqueeze": (1,),
    "Split": (1,),
}

TRACKRT_DOMAIN = "trackrt"
LSCA_OP_TYPE = "LocalStridedCrossAttention"
