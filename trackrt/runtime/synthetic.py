"""Contract-shaped artifacts built from geometry instead of training, for tests and demos.

The graphs honour docs/contracts.md (names, dtypes, dynamic `num_hits`/`num_queries` axes) and find
straight-ish tracks from the beam line without any learned weight:
- hit filter: keeps hits with r below `filter_max_r_mm`;
- encoder: embedding (cos φ, sin φ, z/r) per hit; seed logit > 0 for hits with r < `seed_max_r_mm`;
- decoder: assignment logit A − (1 − cos Δφ)/σφ² − Δ(z/r)²/(2σt²) between a seed and a hit; every
  query is a valid track. `fq-ma` uses a fixed fan of learned-like directions instead of seeds.
Needs the `onnx` package (imported here only), not torch.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

import trackrt
from trackrt.configuration import to_dict
from trackrt.data.features import FeatureConfig
from trackrt.data.particle_ids import encode_particle_id
from trackrt.data.trackml import Event, trackml_weights
from trackrt.runtime.artifact import ARTIFACT_FORMAT, ARTIFACT_JSON

OPSET = 18
NUM_HITS = "num_hits"
NUM_QUERIES = "num_queries"
BARREL_LAYERS_MM: dict[int, float] = {2: 32.0, 4: 72.0, 6: 116.0, 8: 172.0}


@dataclass(frozen=True)
class SyntheticModel:
    """Geometry of the synthetic graphs and the thresholds written to artifact.json."""

    variant: str = "dq-lsca"
    filter_max_r_mm: float = 190.0
    seed_max_r_mm: float = 50.0
    sigma_phi: float = 0.02
    sigma_cot_theta: float = 0.05
    assignment_offset: float = 4.5
    track_logit: float = 3.0
    fixed_queries: int = 64
    seed_threshold: float = 0.5
    max_queries: int = 2000
    min_hits: int = 3
    with_hit_filter: bool = True
    max_hits: int | None = None


def _onnx() -> Any:
    import onnx

    return onnx


def _const(name: str, value: Any, dtype: Any = np.float32) -> Any:
    return _onnx().numpy_helper.from_array(np.asarray(value, dtype=dtype), name)


def _columns(features: FeatureConfig, names: tuple[str, ...]) -> tuple[list, list]:
    """Nodes and initialisers extracting `names` in mm as [1, N] tensors called by their names."""
    helper = _onnx().helper
    nodes, inits = [], []
    for name in names:
        if name not in features.features:
            raise ValueError(f"the synthetic graphs need feature {name!r} (have {features.feature_names})")
        inits.append(_const(f"idx_{name}", features.feature_names.index(name), np.int64))
        inits.append(_const(f"scale_{name}", features.scale(name)))
        nodes.append(helper.make_node("Gather", ["hit_features", f"idx_{name}"], [f"{name}_s"], axis=2))
        nodes.append(helper.make_node("Mul", [f"{name}_s", f"scale_{name}"], [name]))
    return nodes, inits


def _hit_features_input(features: FeatureConfig) -> Any:
    helper, tp = _onnx().helper, _onnx().TensorProto
    return helper.make_tensor_value_info("hit_features", tp.FLOAT, [1, NUM_HITS, features.num_features])


def _model(nodes: list, inits: list, inputs: list, outputs: list, name: str) -> Any:
    onnx = _onnx()
    graph = onnx.helper.make_graph(nodes, name, inputs, outputs, initializer=inits)
    model = onnx.helper.make_model(graph, opset_imports=[onnx.helper.make_opsetid("", OPSET)])
    model.ir_version = 8
    onnx.checker.check_model(model, full_check=True)
    return model


def hit_filter_graph(features: FeatureConfig, spec: SyntheticModel) -> Any:
    """`hit_features` [1, N, F] -> `hit_logits` [1, N] = 0.1/mm · (r_max − r)."""
    helper, tp = _onnx().helper, _onnx().TensorProto
    nodes, inits = _columns(features, ("r",))
    inits += [_const("r_cut", spec.filter_max_r_mm), _const("slope", 0.1)]
    nodes += [
        helper.make_node("Sub", ["r_cut", "r"], ["margin"]),
        helper.make_node("Mul", ["margin", "slope"], ["hit_logits"]),
    ]
    out = helper.make_tensor_value_info("hit_logits", tp.FLOAT, [1, NUM_HITS])
    return _model(nodes, inits, [_hit_features_input(features)], [out], "hit_filter")


def tracker_encoder_graph(features: FeatureConfig, spec: SyntheticModel) -> Any:
    """`hit_features` -> `hit_embeddings` [1, N, 3] (cos φ, sin φ, z/r) and `seed_logits` [1, N]."""
    helper, tp = _onnx().helper, _onnx().TensorProto
    nodes, inits = _columns(features, ("x", "y", "z", "r"))
    components = ("cos_phi", "sin_phi", "cot_theta")
    inits += [
        _const("seed_r", spec.seed_max_r_mm),
        _const("seed_slope", 0.2),
        _const("last_axis", [-1], np.int64),
    ]
    nodes += [
        helper.make_node("Div", ["x", "r"], ["cos_phi"]),
        helper.make_node("Div", ["y", "r"], ["sin_phi"]),
        helper.make_node("Div", ["z", "r"], ["cot_theta"]),
        *[helper.make_node("Unsqueeze", [n, "last_axis"], [f"{n}_3d"]) for n in components],
        helper.make_node("Concat", [f"{n}_3d" for n in components], ["hit_embeddings"], axis=-1),
        helper.make_node("Sub", ["seed_r", "r"], ["seed_margin"]),
        helper.make_node("Mul", ["seed_margin", "seed_slope"], ["seed_logits"]),
    ]
    outputs = [
        helper.make_tensor_value_info("hit_embeddings", tp.FLOAT, [1, NUM_HITS, 3]),
        helper.make_tensor_value_info("seed_logits", tp.FLOAT, [1, NUM_HITS]),
    ]
    return _model(nodes, inits, [_hit_features_input(features)], outputs, "tracker_encoder")


def _fixed_queries(count: int) -> np.ndarray:
    phi = np.linspace(-np.pi, np.pi, count, endpoint=False)
    return np.stack([np.cos(phi), np.sin(phi), np.zeros(count)], axis=-1)[None].astype(np.float32)


def tracker_decoder_graph(spec: SyntheticModel) -> Any:
    """`hit_embeddings` (+ `query_indices`) -> `track_logits` [1, Q], `assignment_logits` [1, Q, N]."""
    helper, tp = _onnx().helper, _onnx().TensorProto
    dynamic = spec.variant != "fq-ma"
    inits = [
        _const("zero", [0], np.int64),
        _const("two", [2], np.int64),
        _const("three", [3], np.int64),
        _const("axis2", [2], np.int64),
        _const("offset", spec.assignment_offset),
        _const("one", 1.0),
        _const("inv_phi", 1.0 / spec.sigma_phi**2),
        _const("inv_t", 0.5 / spec.sigma_cot_theta**2),
        _const("track_logit", spec.track_logit),
        _const("nothing", 0.0),
    ]
    inputs = [helper.make_tensor_value_info("hit_embeddings", tp.FLOAT, [1, NUM_HITS, 3])]
    nodes = []
    if dynamic:
        inputs.append(helper.make_tensor_value_info("query_indices", tp.INT64, [1, NUM_QUERIES]))
        nodes += [
            helper.make_node("Squeeze", ["query_indices", "zero"], ["query_rows"]),
            helper.make_node("Gather", ["hit_embeddings", "query_rows"], ["queries"], axis=1),
        ]
    else:
        inits.append(_const("queries", _fixed_queries(spec.fixed_queries)))
    nodes += [
        helper.make_node("Slice", ["queries", "zero", "two", "axis2"], ["query_dir"]),
        helper.make_node("Slice", ["hit_embeddings", "zero", "two", "axis2"], ["hit_dir"]),
        helper.make_node("Transpose", ["hit_dir"], ["hit_dir_t"], perm=[0, 2, 1]),
        helper.make_node("MatMul", ["query_dir", "hit_dir_t"], ["cos_dphi"]),
        helper.make_node("Sub", ["one", "cos_dphi"], ["phi_term"]),
        helper.make_node("Mul", ["phi_term", "inv_phi"], ["phi_penalty"]),
        helper.make_node("Slice", ["queries", "two", "three", "axis2"], ["query_t"]),
        helper.make_node("Slice", ["hit_embeddings", "two", "three", "axis2"], ["hit_t"]),
        helper.make_node("Transpose", ["hit_t"], ["hit_t_t"], perm=[0, 2, 1]),
        helper.make_node("Sub", ["query_t", "hit_t_t"], ["dt"]),
        helper.make_node("Mul", ["dt", "dt"], ["dt2"]),
        helper.make_node("Mul", ["dt2", "inv_t"], ["t_penalty"]),
        helper.make_node("Sub", ["offset", "phi_penalty"], ["partial"]),
        helper.make_node("Sub", ["partial", "t_penalty"], ["assignment_logits"]),
        helper.make_node("ReduceSum", ["queries", "axis2"], ["query_sum"], keepdims=0),
        helper.make_node("Mul", ["query_sum", "nothing"], ["query_zero"]),
        helper.make_node("Add", ["query_zero", "track_logit"], ["track_logits"]),
    ]
    outputs = [
        helper.make_tensor_value_info("track_logits", tp.FLOAT, [1, NUM_QUERIES]),
        helper.make_tensor_value_info("assignment_logits", tp.FLOAT, [1, NUM_QUERIES, NUM_HITS]),
    ]
    return _model(nodes, inits, inputs, outputs, "tracker_decoder")


def _model_record(kind: str, features: FeatureConfig, thresholds: dict[str, Any], variant: str) -> dict:
    config: dict[str, Any] = {"features": to_dict(features), **thresholds}
    if kind == "tracker":
        config["variant"] = variant
    return {
        "kind": kind,
        "checkpoint": "",
        "checkpoint_sha256": "",
        "features": to_dict(features),
        "thresholds": thresholds,
        "windows": {},
        "config": config,
    }


def write_synthetic_artifact(
    directory: str | Path, spec: SyntheticModel | None = None, features: FeatureConfig | None = None
) -> Path:
    """Write artifact.json and the graphs of a synthetic artifact into `directory`; returns it."""
    onnx = _onnx()
    spec = spec or SyntheticModel()
    features = features or FeatureConfig()
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    graphs = {
        "tracker_encoder": tracker_encoder_graph(features, spec),
        "tracker_decoder": tracker_decoder_graph(spec),
    }
    models = {
        "tracker": _model_record(
            "tracker",
            features,
            {
                "seed_threshold": spec.seed_threshold,
                "max_queries": spec.max_queries,
                "track_threshold": 0.5,
                "hit_threshold": 0.5,
                "min_hits": spec.min_hits,
            },
            spec.variant,
        )
    }
    if spec.with_hit_filter:
        graphs["hit_filter"] = hit_filter_graph(features, spec)
        models["hit_filter"] = _model_record("hit_filter", features, {"hit_threshold": 0.5}, spec.variant)
    for name, model in graphs.items():
        onnx.save(model, str(directory / f"{name}.onnx"))
    manifest: dict[str, Any] = {
        "format": ARTIFACT_FORMAT,
        "format_version": 1,
        "trackrt_version": trackrt.__version__,
        "lsca_mode": "onnx",
        "opset": OPSET,
        "versions": {"trackrt": trackrt.__version__, "onnx": onnx.__version__},
        "models": models,
        "graphs": {name: {"file": f"{name}.onnx"} for name in graphs},
    }
    if spec.max_hits is not None:
        manifest["limits"] = {"max_hits": spec.max_hits}
    (directory / ARTIFACT_JSON).write_text(json.dumps(manifest, indent=2) + "\n")
    return directory


def synthetic_event(
    event_id: int = 1,
    num_particles: int = 40,
    num_noise_hits: int = 20,
    pt_range: tuple[float, float] = (2.0, 20.0),
    eta_max: float = 1.2,
    field_t: float = 2.0,
    seed: int = 0,
) -> Event:
    """A small TrackML event: primary helices from the beam line through the four pixel barrel layers.

    One hit per particle and layer (volume 8), plus uniformly spread noise hits; all parts
    (hits, particles, truth with official weights) in the official columns.
    """
    rng = np.random.default_rng(seed)
    pt = rng.uniform(*pt_range, num_particles)
    eta = rng.uniform(-eta_max, eta_max, num_particles)
    phi = rng.uniform(-np.pi, np.pi, num_particles)
    vz = rng.normal(0.0, 1.0, num_particles)
    charge = rng.choice([-1, 1], num_particles)
    primaries = np.arange(1, num_particles + 1)
    particle_id = encode_particle_id(np.ones_like(primaries), primaries, 0, 0, 0)
    particle_id = np.asarray(particle_id, dtype=np.int64)
    radius = pt / (0.3 * field_t) * 1000.0
    turn = -charge
    layers = np.array(list(BARREL_LAYERS_MM))
    layer_r = np.array(list(BARREL_LAYERS_MM.values()))
    angle = 2.0 * np.arcsin(layer_r[None, :] / (2.0 * radius[:, None]))  # [P, L]
    centre_x = -turn * radius * np.sin(phi)
    centre_y = turn * radius * np.cos(phi)
    rotation = turn[:, None] * angle
    x = centre_x[:, None] + np.cos(rotation) * -centre_x[:, None] - np.sin(rotation) * -centre_y[:, None]
    y = centre_y[:, None] + np.sin(rotation) * -centre_x[:, None] + np.cos(rotation) * -centre_y[:, None]
    z = vz[:, None] + radius[:, None] * angle * np.sinh(eta)[:, None]
    direction = phi[:, None] + rotation
    px, py = pt[:, None] * np.cos(direction), pt[:, None] * np.sin(direction)
    pz = np.broadcast_to((pt * np.sinh(eta))[:, None], x.shape)

    noise_r = rng.choice(layer_r, num_noise_hits)
    noise_phi = rng.uniform(-np.pi, np.pi, num_noise_hits)
    all_x = np.concatenate([x.ravel(), noise_r * np.cos(noise_phi)])
    all_y = np.concatenate([y.ravel(), noise_r * np.sin(noise_phi)])
    all_z = np.concatenate([z.ravel(), rng.uniform(-400.0, 400.0, num_noise_hits)])
    all_layer = np.concatenate([np.tile(layers, num_particles), layers[np.searchsorted(layer_r, noise_r)]])
    owner = np.concatenate([np.repeat(particle_id, len(layers)), np.zeros(num_noise_hits, dtype=np.int64)])
    order = rng.permutation(len(all_x))
    hit_id = np.arange(1, len(all_x) + 1)
    hits = pd.DataFrame(
        {
            "hit_id": hit_id,
            "x": all_x[order],
            "y": all_y[order],
            "z": all_z[order],
            "volume_id": 8,
            "layer_id": all_layer[order],
            "module_id": 1,
        }
    )
    zeros = np.zeros(num_noise_hits)
    truth = pd.DataFrame(
        {
            "hit_id": hit_id,
            "particle_id": owner[order],
            "tx": hits["x"],
            "ty": hits["y"],
            "tz": hits["z"],
            "tpx": np.concatenate([px.ravel(), zeros])[order],
            "tpy": np.concatenate([py.ravel(), zeros])[order],
            "tpz": np.concatenate([pz.ravel(), zeros])[order],
            "weight": 0.0,
        }
    )
    particles = pd.DataFrame(
        {
            "particle_id": particle_id,
            "particle_type": np.where(charge > 0, 211, -211),
            "vx": 0.0,
            "vy": 0.0,
            "vz": vz,
            "px": pt * np.cos(phi),
            "py": pt * np.sin(phi),
            "pz": pt * np.sinh(eta),
            "q": charge,
            "nhits": len(layers),
        }
    )
    truth["weight"] = trackml_weights(truth, particles)
    return Event(event_id=event_id, hits=hits, particles=particles, truth=truth)
