"""Model configuration dataclasses (encoder, hit filter, tracker) and the named presets."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from trackrt.configuration import ConfigError, from_dict
from trackrt.data.features import FeatureConfig

DecoderVariant = Literal["fq-ma", "dq-ma", "dq-lsca"]
LscaCentering = Literal["strided", "seed"]
NormKind = Literal["layer", "rms"]
ModelKind = Literal["hit_filter", "tracker"]
Selection = Literal["Pix1.0", "Pix0.6"]

PRESETS: tuple[str, ...] = ("tiny", "small", "reference")
KINDS: tuple[str, ...] = ("hit_filter", "tracker")


def _check_positive(where: str, **values: float) -> None:
    for name, value in values.items():
        if value <= 0:
            raise ConfigError(f"{where}{name}: must be > 0, got {value}")


def _check_window(key: str, window: int) -> None:
    if window < 2 or window % 2:
        raise ConfigError(f"{key}: the attention window must be an even integer >= 2, got {window}")


def _check_probability(key: str, value: float) -> None:
    if not 0.0 <= value <= 1.0:
        raise ConfigError(f"{key}: must be a probability in [0, 1], got {value}")


@dataclass
class EncoderConfig:
    """Sliding-window transformer encoder over φ-sorted hits (window wraps at φ = ±π)."""

    dim: int = 256
    num_layers: int = 8
    num_heads: int = 8
    window: int = 512
    wrap: bool = True
    ffn_ratio: float = 2.0
    norm: NormKind = "layer"
    dropout: float = 0.0
    attention_backend: str = "auto"

    def __post_init__(self) -> None:
        _check_positive("encoder.", dim=self.dim, num_layers=self.num_layers, num_heads=self.num_heads)
        _check_positive("encoder.", ffn_ratio=self.ffn_ratio)
        if self.dim % self.num_heads:
            raise ConfigError(f"encoder.dim: {self.dim} is not divisible by num_heads={self.num_heads}")
        _check_window("encoder.window", self.window)
        if not 0.0 <= self.dropout < 1.0:
            raise ConfigError(f"encoder.dropout: must be in [0, 1), got {self.dropout}")


@dataclass
class HitFilterConfig:
    """Hit filter: encoder + per-hit logit "hit belongs to a target particle"."""

    features: FeatureConfig = field(default_factory=FeatureConfig)
    encoder: EncoderConfig = field(default_factory=lambda: EncoderConfig(window=1024))
    hit_threshold: float = 0.5

    def __post_init__(self) -> None:
        _check_probability("hit_threshold", self.hit_threshold)


@dataclass
class TrackerConfig:
    """Tracker: encoder, seed head, decoder (variant `fq-ma` | `dq-ma` | `dq-lsca`) and its thresholds.

    `filter_threshold`, when set, is the hit-filter threshold the tracker was tuned behind; a chain uses it
    in place of the filter checkpoint's own `hit_threshold`. `passes` > 1 runs the tracker again on the
    hits no track of the passes before took (iterative track finding; `find_tracks_in_passes`).
    """

    features: FeatureConfig = field(default_factory=FeatureConfig)
    encoder: EncoderConfig = field(default_factory=lambda: EncoderConfig(window=512))
    variant: DecoderVariant = "dq-lsca"
    decoder_layers: int = 3
    decoder_heads: int = 8
    decoder_ffn_ratio: float = 2.0
    lsca_window: int = 64
    lsca_wrap: bool = True
    lsca_centering: LscaCentering = "strided"
    num_queries: int = 2100
    detach_queries: bool = True
    seed_threshold: float = 0.1
    max_queries: int = 2000
    track_threshold: float = 0.5
    hit_threshold: float = 0.5
    min_hits: int = 3
    duplicate_iou: float = 1.0
    filter_threshold: float | None = None
    passes: int = 1
    attention_backend: str = "auto"

    def __post_init__(self) -> None:
        _check_positive(
            "",
            decoder_layers=self.decoder_layers,
            decoder_heads=self.decoder_heads,
            decoder_ffn_ratio=self.decoder_ffn_ratio,
            num_queries=self.num_queries,
            max_queries=self.max_queries,
        )
        if self.encoder.dim % self.decoder_heads:
            raise ConfigError(
                f"decoder_heads: encoder.dim={self.encoder.dim} is not divisible by {self.decoder_heads}"
            )
        _check_window("lsca_window", self.lsca_window)
        for key in ("seed_threshold", "track_threshold", "hit_threshold", "duplicate_iou"):
            _check_probability(key, getattr(self, key))
        if self.filter_threshold is not None:
            _check_probability("filter_threshold", self.filter_threshold)
        if self.min_hits < 1:
            raise ConfigError(f"min_hits: must be >= 1, got {self.min_hits}")
        if self.passes < 1:
            raise ConfigError(f"passes: must be >= 1, got {self.passes}")
        if self.lsca_centering == "seed" and self.variant != "dq-lsca":
            raise ConfigError(f"lsca_centering: 'seed' needs variant 'dq-lsca', got variant {self.variant!r}")

    def chain_filter_threshold(self, filter_hit_threshold: float) -> float:
        """The filter threshold this tracker runs behind: its `filter_threshold` if set, else the filter's."""
        return filter_hit_threshold if self.filter_threshold is None else self.filter_threshold

    @property
    def dynamic_queries(self) -> bool:
        """True when queries come from seed hits (`dq-*`), False for learned queries (`fq-ma`)."""
        return self.variant != "fq-ma"


# Per preset: encoder size, encoder windows (tracker, hit filter), decoder layers, learned queries.
_PRESET_SIZES: dict[str, dict[str, Any]] = {
    "tiny": {"dim": 32, "layers": 2, "heads": 2, "windows": (32, 64), "decoder_layers": 2, "queries": 32},
    "small": {"dim": 64, "layers": 3, "heads": 4, "windows": (128, 128), "decoder_layers": 3, "queries": 256},
    "reference": {
        "dim": 256, "layers": 8, "heads": 8, "windows": (512, 1024), "decoder_layers": 3, "queries": 2100,
    },
}  # fmt: skip

# Per selection and preset: LSCA window and the dynamic-query cap M (DESIGN §4, §4.1).
_SELECTION_QUERIES: dict[str, dict[str, tuple[int, int]]] = {
    "Pix1.0": {"tiny": (16, 64), "small": (64, 256), "reference": (64, 2000)},
    "Pix0.6": {"tiny": (16, 128), "small": (128, 512), "reference": (128, 4000)},
}


def preset(
    name: str, kind: str, selection: str = "Pix1.0", overrides: dict[str, Any] | None = None
) -> HitFilterConfig | TrackerConfig:
    """The named preset (`tiny`, `small`, `reference`) for `kind` (`hit_filter` | `tracker`).

    `selection` (`Pix1.0` | `Pix0.6`) sets the LSCA window and query cap; `overrides` are nested config
    keys applied on top (unknown keys refused with the key named).
    """
    if name not in _PRESET_SIZES:
        raise ConfigError(f"preset: unknown preset {name!r} (known: {', '.join(PRESETS)})")
    if kind not in KINDS:
        raise ConfigError(f"kind: unknown model kind {kind!r} (known: {', '.join(KINDS)})")
    if selection not in _SELECTION_QUERIES:
        raise ConfigError(f"selection: unknown selection {selection!r} (known: Pix1.0, Pix0.6)")
    size = _PRESET_SIZES[name]
    tracker_window, filter_window = size["windows"]
    encoder = {
        "dim": size["dim"],
        "num_layers": size["layers"],
        "num_heads": size["heads"],
        "window": filter_window if kind == "hit_filter" else tracker_window,
    }
    if kind == "hit_filter":
        data: dict[str, Any] = {"encoder": encoder}
        cls: type[HitFilterConfig] | type[TrackerConfig] = HitFilterConfig
    else:
        lsca_window, max_queries = _SELECTION_QUERIES[selection][name]
        data = {
            "encoder": encoder,
            "decoder_layers": size["decoder_layers"],
            "decoder_heads": size["heads"],
            "lsca_window": lsca_window,
            "num_queries": size["queries"],
            "max_queries": max_queries,
        }
        cls = TrackerConfig
    return from_dict(cls, _merge(data, overrides or {}))


def _merge(base: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def config_from_dict(kind: str, data: dict[str, Any]) -> HitFilterConfig | TrackerConfig:
    """Rebuild a model config of `kind` from its plain-dict form (e.g. a checkpoint's config.json)."""
    if kind not in KINDS:
        raise ConfigError(f"kind: unknown model kind {kind!r} (known: {', '.join(KINDS)})")
    return from_dict(HitFilterConfig if kind == "hit_filter" else TrackerConfig, data)


def model_kind(config: HitFilterConfig | TrackerConfig) -> str:
    """`hit_filter` or `tracker` for a config object."""
    if isinstance(config, HitFilterConfig):
        return "hit_filter"
    if isinstance(config, TrackerConfig):
        return "tracker"
    raise TypeError(f"config: expected HitFilterConfig or TrackerConfig, got {type(config).__name__}")
