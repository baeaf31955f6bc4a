"""Training configuration dataclasses (loss weights, optimiser, queries, data, stages), read from YAML."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Literal

from trackrt.configuration import ConfigError

FOCAL_WEIGHTS: dict[str, float] = {"Pix1.0": 25.0, "Pix0.6": 100.0}


@dataclass
class LossConfig:
    """Matching-cost and loss weights (DESIGN §4): 0.1·BCE(valid) + 2·dice + 25·focal (100 at Pix0.6).

    `focal_weight` None (the default) means the selection's value (`FOCAL_WEIGHTS`): a `TrainConfig`
    fills it in from `data.selection`; used on its own it is Pix1.0's 25.
    """

    valid_weight: float = 0.1
    dice_weight: float = 2.0
    focal_weight: float | None = None
    focal_gamma: float = 2.0
    seed_weight: float = 1.0
    seed_pos_weight: float = 1.0
    intermediate_layers: bool = True
    absent_query_cost: float = 1.0e6

    def __post_init__(self) -> None:
        for name in ("valid_weight", "dice_weight", "focal_weight", "focal_gamma", "seed_weight"):
            if getattr(self, name) is not None and getattr(self, name) < 0:
                raise ConfigError(f"loss.{name} must be ≥ 0, got {getattr(self, name)}")
        if self.seed_pos_weight <= 0:
            raise ConfigError(f"loss.seed_pos_weight must be > 0, got {self.seed_pos_weight}")

    @property
    def focal(self) -> float:
        """The focal weight in use (Pix1.0's value when `focal_weight` is unset)."""
        return FOCAL_WEIGHTS["Pix1.0"] if self.focal_weight is None else self.focal_weight


@dataclass
class OptimConfig:
    """AdamW with linear warm-up and cosine decay, gradient clipping and accumulation over events."""

    lr: float = 1.0e-3
    weight_decay: float = 1.0e-5
    betas: tuple[float, float] = (0.9, 0.999)
    warmup_steps: int = 100
    min_lr_ratio: float = 0.01
    grad_clip: float = 1.0
    grad_accumulation: int = 1

    def __post_init__(self) -> None:
        if self.lr <= 0:
            raise ConfigError(f"optim.lr must be > 0, got {self.lr}")
        if self.warmup_steps < 0:
            raise ConfigError(f"optim.warmup_steps must be ≥ 0, got {self.warmup_steps}")
        if not 0.0 <= self.min_lr_ratio <= 1.0:
            raise ConfigError(f"optim.min_lr_ratio must be in [0, 1], got {self.min_lr_ratio}")
        if self.grad_accumulation < 1:
            raise ConfigError(f"optim.grad_accumulation must be ≥ 1, got {self.grad_accumulation}")


@dataclass
class ModelChoice:
    """A model preset name plus overrides (nested keys of the model config; unknown keys refused)."""

    preset: str = "tiny"
    overrides: dict[str, Any] = field(default_factory=dict)


@dataclass
class QueryConfig:
    """How the tracker's dynamic queries are formed in training (see `trackrt.train.queries`)."""

    include_true_seeds: bool = True
    seed_threshold: float | None = None
    max_queries: int | None = None

    def __post_init__(self) -> None:
        if self.seed_threshold is not None and not 0.0 <= self.seed_threshold <= 1.0:
            raise ConfigError(f"queries.seed_threshold must be in [0, 1], got {self.seed_threshold}")
        if self.max_queries is not None and self.max_queries < 1:
            raise ConfigError(f"queries.max_queries must be ≥ 1, got {self.max_queries}")


@dataclass
class DataConfig:
    """Event directories (TrackML CSV), the sample cache and the target selection.

    `pileup` (⟨μ⟩ of the training events, if known) is recorded in the checkpoints' metadata.
    `train_pt_min` (GeV) replaces the selection's pT cut for what the models learn (hit-filter targets,
    the truth filter's hits, tracker targets), e.g. a margin below it so that the hit filter keeps
    near-threshold particles whole; validation and evaluation still count the selection's targets.
    """

    train_dir: str = ""
    val_dir: str | None = None
    cache_dir: str | None = None
    selection: Literal["Pix1.0", "Pix0.6"] = "Pix1.0"
    max_train_events: int | None = None
    max_val_events: int | None = None
    pileup: float | None = None
    train_pt_min: float | None = None

    def __post_init__(self) -> None:
        if self.pileup is not None and self.pileup < 0:
            raise ConfigError(f"data.pileup must be ≥ 0, got {self.pileup}")
        pt_min = self.train_pt_min
        if pt_min is not None and not (math.isfinite(pt_min) and pt_min >= 0):
            raise ConfigError(f"data.train_pt_min must be a finite pT ≥ 0 (GeV), got {self.train_pt_min}")
        if not self.train_dir:
            raise ConfigError("data.train_dir: a directory of training events is required")
        for name in ("max_train_events", "max_val_events"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ConfigError(f"data.{name} must be ≥ 1, got {value}")


@dataclass
class StageConfig:
    """One model to train: preset + overrides, optimiser, length and the validation/checkpoint cadence.

    Intervals count optimiser steps; 0 means once per epoch. `init_from` starts from a checkpoint's
    weights (fine-tuning: the optimiser and the learning-rate schedule start afresh).
    """

    model: ModelChoice = field(default_factory=ModelChoice)
    optim: OptimConfig = field(default_factory=OptimConfig)
    epochs: int = 1
    max_steps: int | None = None
    init_from: str | None = None
    val_interval: int = 0
    checkpoint_interval: int = 0
    log_interval: int = 10

    def __post_init__(self) -> None:
        if self.epochs < 1:
            raise ConfigError(f"epochs must be ≥ 1, got {self.epochs}")
        if self.max_steps is not None and self.max_steps < 1:
            raise ConfigError(f"max_steps must be ≥ 1, got {self.max_steps}")
        for name in ("val_interval", "checkpoint_interval"):
            if getattr(self, name) < 0:
                raise ConfigError(f"{name} must be ≥ 0, got {getattr(self, name)}")
        if self.log_interval < 1:
            raise ConfigError(f"log_interval must be ≥ 1, got {self.log_interval}")


def _check_vertex_z_scale(stage: str, scale: float | None) -> None:
    if scale is not None and not (math.isfinite(scale) and scale > 0.0):
        raise ConfigError(f"{stage}.vertex_z_scale must be a positive number of mm or null, got {scale}")


@dataclass
class HitFilterStageConfig(StageConfig):
    """Hit-filter training; afterwards the threshold is set for `target_efficiency` on target hits.

    `particle_weight_power` α weighs each target hit's loss by n^-α (n: its particle's pixel hits,
    mean weight 1 over an event's target hits), so hits of short tracks, which lose their particle
    sooner, count more; 0 weighs every hit alike. `vertex_z_scale` s (mm) further weighs it by
    1 + (vz / s)² (vz: its particle's production z), so particles made far along the beam, rare in
    training and lost more often, count more; None leaves vz out.
    """

    target_efficiency: float = 0.99
    particle_weight_power: float = 0.0
    vertex_z_scale: float | None = None

    def __post_init__(self) -> None:
        super().__post_init__()
        if not 0.0 < self.target_efficiency <= 1.0:
            raise ConfigError(f"target_efficiency must be in (0, 1], got {self.target_efficiency}")
        if not (math.isfinite(self.particle_weight_power) and 0.0 <= self.particle_weight_power <= 2.0):
            raise ConfigError(
                f"hit_filter.particle_weight_power must be in [0, 2], got {self.particle_weight_power}"
            )
        _check_vertex_z_scale("hit_filter", self.vertex_z_scale)


@dataclass
class TrackerStageConfig(StageConfig):
    """Tracker training: loss weights, query formation, which hits it sees (`hits`: the truth filter's, the
    learned filter's, or "truth+learned", both: the filter's false positives without its losses) and
    which particles it learns to build (`particles`: the selection's targets, or "all" with ≥ 3 hits).
    `hit_dropout` drops that fraction of the selected hits at random at every step, as a hit filter's
    losses would (a particle whose first hit is dropped is seeded at its next one); `hit_contamination`
    adds that many non-selected hits per selected hit, drawn afresh at every step, as the hits a
    filter lets through would (0.45 matches a filter at 69 % purity). `vertex_z_scale` s (mm) weighs
    each target's matched and seed losses by 1 + (vz / s)² (mean 1 per event), as for the hit filter.
    """

    loss: LossConfig = field(default_factory=LossConfig)
    queries: QueryConfig = field(default_factory=QueryConfig)
    hits: Literal["truth", "learned", "truth+learned"] = "truth"
    filter_checkpoint: str | None = None
    particles: Literal["selection", "all"] = "selection"
    hit_dropout: float = 0.0
    hit_contamination: float = 0.0
    vertex_z_scale: float | None = None

    def __post_init__(self) -> None:
        super().__post_init__()
        if not (math.isfinite(self.hit_dropout) and 0.0 <= self.hit_dropout < 1.0):
            raise ConfigError(f"tracker.hit_dropout must be in [0, 1), got {self.hit_dropout}")
        if not (math.isfinite(self.hit_contamination) and 0.0 <= self.hit_contamination <= 10.0):
            raise ConfigError(f"tracker.hit_contamination must be in [0, 10], got {self.hit_contamination}")
        _check_vertex_z_scale("tracker", self.vertex_z_scale)


@dataclass
class TrainConfig:
    """A training run: data, an optional hit-filter stage, an optional tracker stage, seed and device.

    `num_threads` sets torch's CPU threads (None: torch's default); small models on a busy CPU run
    far faster with 1.
    """

    data: DataConfig
    out_dir: str = "runs/train"
    hit_filter: HitFilterStageConfig | None = None
    tracker: TrackerStageConfig | None = None
    seed: int = 0
    device: Literal["auto", "cpu", "cuda"] = "auto"
    bf16: bool = True
    num_threads: int | None = None
    progress_bar: bool = True

    def __post_init__(self) -> None:
        if self.num_threads is not None and self.num_threads < 1:
            raise ConfigError(f"num_threads must be ≥ 1, got {self.num_threads}")
        if self.hit_filter is None and self.tracker is None:
            raise ConfigError("hit_filter, tracker: the config trains nothing; give at least one of them")
        for kind in ("hit_filter", "tracker"):
            if getattr(self, kind) is not None:
                self.model_config(kind)
        tracker = self.tracker
        if tracker is not None and tracker.loss.focal_weight is None:
            tracker.loss.focal_weight = FOCAL_WEIGHTS[self.data.selection]
        if tracker is not None and tracker.hits != "truth":
            if tracker.filter_checkpoint is None and self.hit_filter is None:
                raise ConfigError(
                    f"tracker.hits: {tracker.hits!r} needs tracker.filter_checkpoint or a hit_filter stage "
                    "in this config"
                )

    def model_config(self, kind: str) -> Any:
        """The model config of stage `kind`: its preset for the data selection plus its overrides."""
        from trackrt.model.config import preset

        stage = getattr(self, kind)
        try:
            return preset(stage.model.preset, kind, self.data.selection, stage.model.overrides)
        except ConfigError as exc:
            raise ConfigError(f"{kind}.model: {exc}") from None
