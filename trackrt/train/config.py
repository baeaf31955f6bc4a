"""Training configuration dataclasses (loss weights, optimiser, queries, data, stages), read from YAML."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from trackrt.configuration import ConfigError


@dataclass
class LossConfig:
    """Matching-cost and loss weights (DESIGN §4): 0.1·BCE(valid) + 2·dice + 25·focal (100 at Pix0.6)."""

    valid_weight: float = 0.1
    dice_weight: float = 2.0
    focal_weight: float = 25.0
    focal_gamma: float = 2.0
    seed_weight: float = 1.0
    seed_pos_weight: float = 1.0
    intermediate_layers: bool = True
    absent_query_cost: float = 1.0e6

    def __post_init__(self) -> None:
        for name in ("valid_weight", "dice_weight", "focal_weight", "focal_gamma", "seed_weight"):
            if getattr(self, name) < 0:
                raise ConfigError(f"loss.{name} must be ≥ 0, got {getattr(self, name)}")
        if self.seed_pos_weight <= 0:
            raise ConfigError(f"loss.seed_pos_weight must be > 0, got {self.seed_pos_weight}")


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
