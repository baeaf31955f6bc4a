"""Model configs and modules: shapes per variant, LSCA locality, masked-attention rules, padding, presets."""

from __future__ import annotations

import pytest
import torch

from trackrt.configuration import ConfigError, to_dict
from trackrt.model.config import EncoderConfig, config_from_dict, model_kind, preset
from trackrt.model.decoder import attention_mask_from_assignment
from trackrt.model.hit_filter import HitFilter
from trackrt.model.tracker import Tracker

VARIANTS = ("fq-ma", "dq-ma", "dq-lsca")
NUM_FEATURES = 8


def tiny_tracker(variant: str, **overrides: object) -> Tracker:
    torch.manual_seed(0)
    return Tracker(preset("tiny", "tracker", overrides={"variant": variant, **overrides})).eval()


def query_indices_for(variant: str, indices: list[int]) -> torch.Tensor | None:
    return None if variant == "fq-ma" else torch.tensor([indices])


@pytest.mark.parametrize("variant", VARIANTS)
def test_tracker_shapes_for_every_variant(variant: str) -> None:
    tracker = tiny_tracker(variant)
    hits = torch.randn(1, 80, NUM_FEATURES)
    query_indices = query_indices_for(variant, [2, 11, 40, 41, 79])
    out = tracker(hits, query_indices)
    num_queries = tracker.config.num_queries if variant == "fq-ma" else 5
    assert out["hit_embeddings"].shape == (1, 80, 32)
    assert out["seed_logits"].shape == (1, 80)
    assert len(out["layers"]) == tracker.config.decoder_layers
    for layer in out["layers"]:
        assert layer["track_logits"].shape == (1, num_queries)
        assert layer["assignment_logits"].shape == (1, num_queries, 80)
    assert out["assignment_logits"] is out["layers"][-1]["assignment_logits"]
    embeddings, _ = tracker.encode(hits)
    torch.testing.assert_close(embeddings, out["hit_embeddings"])
    torch.testing.assert_close(
        tracker.decode(embeddings, query_indices)[-1]["track_logits"], out["track_logits"]
    )


def test_hit_filter_shape_and_feature_check() -> None:
    torch.manual_seed(0)
    model = HitFilter(preset("tiny", "hit_filter"))
    assert model(torch.randn(2, 70, NUM_FEATURES)).shape == (2, 70)
    with pytest.raises(ValueError, match=r"hit_features: expected shape \[B, N, F=8\]"):
        model(torch.randn(1, 70, 5))


@pytest.mark.parametrize("variant", VARIANTS)
def test_tiny_preset_forward_backward_reaches_every_parameter(variant: str) -> None:
    tracker = tiny_tracker(variant).train()
    out = tracker(torch.randn(1, 60, NUM_FEATURES), query_indices_for(variant, [0, 7, 30, 59]))
    loss = out["seed_logits"].sum() + sum(
        layer["track_logits"].sum() + layer["assignment_logits"].pow(2).mean() for layer in out["layers"]
    )
    loss.backward()
    missing = [name for name, p in tracker.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    assert missing == []


@pytest.mark.parametrize("variant", ("dq-ma", "dq-lsca"))
def test_dynamic_queries_are_detached_hit_embeddings(variant: str) -> None:
    tracker = tiny_tracker(variant, decoder_layers=1)
    hits = torch.randn(1, 50, 32, requires_grad=True)
    query_indices = torch.tensor([[4, 20]])
    queries = tracker.decoder.initial_queries(hits, query_indices)
    torch.testing.assert_close(queries, hits[:, [4, 20]])
    assert not queries.requires_grad


def lsca_gradient(tracker: Tracker, hits: torch.Tensor, query_indices: torch.Tensor) -> torch.Tensor:
    """|d track_logits / d hit embeddings| per hit (queries are detached, so only attention carries it)."""
    hits = hits.clone().requires_grad_(True)
    tracker.decode(hits, query_indices)[-1]["track_logits"].sum().backward()
    return hits.grad.abs().sum(dim=-1)[0]


def circular_distance(index: torch.Tensor, center: int, length: int) -> torch.Tensor:
    d = (index - center).abs()
    return torch.minimum(d, length - d)


@pytest.mark.parametrize("centering", ("strided", "seed"))
def test_dq_lsca_query_sees_only_its_window(centering: str) -> None:
    tracker = tiny_tracker("dq-lsca", lsca_centering=centering, lsca_window=16)
    num_hits, seed = 100, 37
    gradient = lsca_gradient(tracker, torch.randn(1, num_hits, 32), torch.tensor([[seed]]))
    center = 0 if centering == "strided" else seed  # one query: strided centre round(0·N/1) = 0
    inside = circular_distance(torch.arange(num_hits), center, num_hits) <= 8
    assert int(inside.sum()) == 17
    assert torch.all(gradient[~inside] == 0)
    assert torch.all(gradient[inside] > 0)


def test_dq_lsca_strided_centres_bound_what_any_query_sees() -> None:
    tracker = tiny_tracker("dq-lsca", lsca_window=16)
    num_hits = 100  # four queries: centres 0, 25, 50, 75; query self-attention mixes their windows
    gradient = lsca_gradient(tracker, torch.randn(1, num_hits, 32), torch.tensor([[3, 30, 60, 90]]))
    index = torch.arange(num_hits)
    inside = torch.zeros(num_hits, dtype=torch.bool)
    for center in (0, 25, 50, 75):
        inside |= circular_distance(index, center, num_hits) <= 8
    assert torch.all(gradient[~inside] == 0)
    assert torch.all(gradient[inside] > 0)


def constant_assignment_head(tracker: Tracker) -> None:
    """Make MLP(query) = (1, …, 1): every query's assignment logit for a hit is its coordinate sum."""
    last = tracker.decoder.heads.assignment_head.net[-1]
    with torch.no_grad():
        last.weight.zero_()
        last.bias.fill_(1.0)


@pytest.mark.parametrize("variant", ("fq-ma", "dq-ma"))
def test_masked_attention_follows_assignment_mask(variant: str) -> None:
    tracker = tiny_tracker(variant, decoder_layers=1)
    constant_assignment_head(tracker)
    torch.manual_seed(1)
    hits = torch.randn(1, 40, 32)
    in_mask = hits.sum(dim=-1)[0] >= 0
    assert 0 < int(in_mask.sum()) < 40
    gradient = lsca_gradient(tracker, hits, query_indices_for(variant, [1, 5]))
    assert torch.all(gradient[~in_mask] == 0)
    assert torch.all(gradient[in_mask] > 0)


@pytest.mark.parametrize("variant", ("fq-ma", "dq-ma"))
def test_query_with_empty_mask_attends_to_every_hit(variant: str) -> None:
    tracker = tiny_tracker(variant, decoder_layers=1)
    constant_assignment_head(tracker)
    torch.manual_seed(2)
    hits = torch.randn(1, 40, 32)
    hits = hits - hits.mean(dim=-1, keepdim=True) - 0.1  # every coordinate sum negative: empty masks
    gradient = lsca_gradient(tracker, hits, query_indices_for(variant, [1, 5]))
    assert torch.all(gradient > 0)


def test_attention_mask_from_assignment_rules() -> None:
    logits = torch.tensor([[[0.0, -1.0, 2.0, 3.0], [-1.0, -2.0, -0.5, 4.0], [-1.0, -1.0, -1.0, -1.0]]])
    real_hits = torch.tensor([[[True, True, True, False]]])
    mask = attention_mask_from_assignment(logits, real_hits)
    expected = torch.tensor(
        [[[True, False, True, False], [True, True, True, False], [True, True, True, False]]]
    )
    assert torch.equal(mask, expected)  # logit 0 ↔ sigmoid 0.5 counts; padding never attended


@pytest.mark.parametrize("variant", VARIANTS)
def test_padding_does_not_change_real_hit_outputs(variant: str) -> None:
    tracker = tiny_tracker(variant)
    torch.manual_seed(3)
    real = torch.randn(1, 45, NUM_FEATURES)
    padded = torch.cat([real, 50 * torch.randn(1, 30, NUM_FEATURES)], dim=1)
    query_indices = query_indices_for(variant, [3, 20, 44])
    expected = tracker(real, query_indices)
    got = tracker(padded, query_indices, hit_lengths=torch.tensor([45]))
    torch.testing.assert_close(
        got["hit_embeddings"][:, :45], expected["hit_embeddings"], atol=1e-5, rtol=1e-5
    )
    torch.testing.assert_close(got["track_logits"], expected["track_logits"], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(
        got["assignment_logits"][..., :45], expected["assignment_logits"], atol=1e-5, rtol=1e-5
    )


@pytest.mark.parametrize("variant", VARIANTS)
def test_fewer_hits_than_window_attends_to_each_hit_once(variant: str) -> None:
    small_window = tiny_tracker(variant)
    large_window = tiny_tracker(variant, encoder={"window": 64}, lsca_window=64)
    large_window.load_state_dict(small_window.state_dict())
    hits = torch.randn(1, 12, NUM_FEATURES)  # N = 12 < every window: all windows cover all hits
    query_indices = query_indices_for(variant, [0, 6, 11])
    a, b = small_window(hits, query_indices), large_window(hits, query_indices)
    torch.testing.assert_close(a["hit_embeddings"], b["hit_embeddings"])
    torch.testing.assert_close(a["assignment_logits"], b["assignment_logits"])


@pytest.mark.parametrize("variant", ("dq-ma", "dq-lsca"))
def test_no_queries_gives_empty_outputs(variant: str) -> None:
    out = tiny_tracker(variant)(torch.randn(1, 30, NUM_FEATURES), torch.zeros(1, 0, dtype=torch.int64))
    assert out["track_logits"].shape == (1, 0)
    assert out["assignment_logits"].shape == (1, 0, 30)


def test_query_indices_are_checked() -> None:
    embeddings = torch.randn(1, 20, 32)
    with pytest.raises(ValueError, match="query_indices: required for variant 'dq-lsca'"):
        tiny_tracker("dq-lsca").decode(embeddings)
    with pytest.raises(ValueError, match="query_indices: must be None for variant 'fq-ma'"):
        tiny_tracker("fq-ma").decode(embeddings, torch.tensor([[1]]))
    with pytest.raises(ValueError, match=r"query_indices: values must lie in \[0, N=20\)"):
        tiny_tracker("dq-ma").decode(embeddings, torch.tensor([[3, 20]]))
    with pytest.raises(ValueError, match=r"query_indices: expected shape \[B=1, Q\]"):
        tiny_tracker("dq-ma").decode(embeddings, torch.tensor([3, 4]))


def test_presets_match_the_design_sizes() -> None:
    reference = preset("reference", "tracker")
    assert (reference.encoder.dim, reference.encoder.num_layers, reference.encoder.num_heads) == (256, 8, 8)
    assert (reference.encoder.window, reference.decoder_layers, reference.lsca_window) == (512, 3, 64)
    assert preset("reference", "hit_filter").encoder.window == 1024
    assert preset("reference", "tracker", selection="Pix0.6").lsca_window == 128
    tiny = preset("tiny", "tracker")
    assert (tiny.encoder.dim, tiny.encoder.num_layers, tiny.encoder.num_heads) == (32, 2, 2)
    small = preset("small", "hit_filter")
    assert 64 <= small.encoder.dim <= 96 and 3 <= small.encoder.num_layers <= 4
    assert model_kind(reference) == "tracker"


def test_config_round_trips_and_refuses_bad_values() -> None:
    config = preset("small", "tracker", overrides={"variant": "dq-ma", "encoder": {"norm": "rms"}})
    assert config_from_dict("tracker", to_dict(config)) == config
    with pytest.raises(ConfigError, match=r"encoder\.window: .* even"):
        preset("tiny", "tracker", overrides={"encoder": {"window": 31}})
    with pytest.raises(ConfigError, match=r"lsca_window: .* even"):
        preset("tiny", "tracker", overrides={"lsca_window": 15})
    with pytest.raises(ConfigError, match=r"unknown config key 'encoder\.widow'"):
        preset("tiny", "tracker", overrides={"encoder": {"widow": 32}})
    with pytest.raises(ConfigError, match="variant"):
        preset("tiny", "tracker", overrides={"variant": "dq-lsa"})
    with pytest.raises(ConfigError, match="lsca_centering: 'seed' needs variant 'dq-lsca'"):
        preset("tiny", "tracker", overrides={"variant": "dq-ma", "lsca_centering": "seed"})
    with pytest.raises(ConfigError, match=r"encoder\.dim: 30 is not divisible"):
        EncoderConfig(dim=30, num_heads=4)
    with pytest.raises(ConfigError, match=r"duplicate_iou: must be a probability in \[0, 1\], got 1.5"):
        preset("tiny", "tracker", overrides={"duplicate_iou": 1.5})
    with pytest.raises(ConfigError, match="preset: unknown preset 'huge'"):
        preset("huge", "tracker")
    with pytest.raises(ConfigError, match="kind: unknown model kind"):
        preset("tiny", "decoder")
