"""Per-graph export configs: file names, named inputs and outputs, dtypes and dynamic axes."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import onnx

LscaMode = Literal["plugin", "onnx"]
DecoderVariant = Literal["fq-ma", "dq-ma", "dq-lsca"]

NUM_HITS = "num_hits"
NUM_QUERIES = "num_queries"
MIN_OPSET = 18
DEFAULT_OPSET = 18

_ONNX_DTYPES = {"float32": onnx.TensorProto.FLOAT, "int64": onnx.TensorProto.INT64}


@dataclass(frozen=True)
class TensorSpec:
    """One named graph input or output; `axes` name each dimension (dynamic ones by their axis name)."""

    name: str
    dtype: Literal["float32", "int64"]
    axes: tuple[str, ...]
    meaning: str

    @property
    def onnx_dtype(self) -> int:
        return _ONNX_DTYPES[self.dtype]


@dataclass(frozen=True)
class GraphSpec:
    """What one ONNX file of the artifact looks like from the outside."""

    name: str
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]
    dynamic_axes: tuple[str, ...]

    @property
    def filename(self) -> str:
        return f"{self.name}.onnx"

    @property
    def tensorrt_filename(self) -> str:
        return f"{self.name}.trt.onnx"

    @property
    def input_names(self) -> list[str]:
        return [t.name for t in self.inputs]

    @property
    def output_names(self) -> list[str]:
        return [t.name for t in self.outputs]


HIT_FEATURES = TensorSpec(
    "hit_features",
    "float32",
    ("batch", NUM_HITS, "num_features"),
    "normalised hit features (`trackrt.data.features.hit_features`), hits sorted by φ",
)
HIT_EMBEDDINGS = TensorSpec(
    "hit_embeddings",
    "float32",
    ("batch", NUM_HITS, "embed_dim"),
    "tracker encoder output per hit, φ order",
)
SEED_LOGITS = TensorSpec(
    "seed_logits",
    "float32",
    ("batch", NUM_HITS),
    "logit that the hit is the first (smallest-r) hit of a target particle",
)
QUERY_INDICES = TensorSpec(
    "query_indices",
    "int64",
    ("batch", NUM_QUERIES),
    "ascending hit indices of the seeds used as queries (`trackrt.data.tracks.select_seeds`)",
)
TRACK_LOGITS = TensorSpec(
    "track_logits",
    "float32",
    ("batch", NUM_QUERIES),
    "logit that the query's track is valid (sigmoid ≥ track threshold)",
)
ASSIGNMENT_LOGITS = TensorSpec(
    "assignment_logits",
    "float32",
    ("batch", NUM_QUERIES, NUM_HITS),
    "logit that hit n belongs to query q's track (final decoder layer)",
)

HIT_FILTER = GraphSpec(
    name="hit_filter",
    inputs=(HIT_FEATURES,),
    outputs=(
        TensorSpec(
            "hit_logits",
            "float32",
            ("batch", NUM_HITS),
            "logit that the hit belongs to a target particle (keep ≥ filter threshold)",
        ),
    ),
    dynamic_axes=(NUM_HITS,),
)
TRACKER_ENCODER = GraphSpec(
    name="tracker_encoder",
    inputs=(HIT_FEATURES,),
    outputs=(HIT_EMBEDDINGS, SEED_LOGITS),
    dynamic_axes=(NUM_HITS,),
)


def decoder_spec(variant: DecoderVariant) -> GraphSpec:
    """The decoder graph: dynamic queries take `query_indices`; fixed learned queries (`fq-ma`) do not."""
    if variant == "fq-ma":
        return GraphSpec(
            name="tracker_decoder",
            inputs=(HIT_EMBEDDINGS,),
            outputs=(TRACK_LOGITS, ASSIGNMENT_LOGITS),
            dynamic_axes=(NUM_HITS,),
        )
    return GraphSpec(
        name="tracker_decoder",
        inputs=(HIT_EMBEDDINGS, QUERY_INDICES),
        outputs=(TRACK_LOGITS, ASSIGNMENT_LOGITS),
        dynamic_axes=(NUM_HITS, NUM_QUERIES),
    )


@dataclass(frozen=True)
class ExportOptions:
    """How to export: LSCA as the custom node (`plugin`) or standard ops (`onnx`), opset, trace sizes."""

    lsca_mode: LscaMode = "plugin"
    opset: int = DEFAULT_OPSET
    example_num_hits: int = 613
    example_num_queries: int = 41

    def __post_init__(self) -> None:
        if self.opset < MIN_OPSET:
            raise ValueError(f"opset {self.opset} is below {MIN_OPSET}, the lowest this export supports")
        if self.lsca_mode not in ("plugin", "onnx"):
            raise ValueError(f"lsca mode must be 'plugin' or 'onnx', got {self.lsca_mode!r}")
