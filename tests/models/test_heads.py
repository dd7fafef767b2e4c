"""Margin and MarginHead: ArcFace / CosFace logits, the theta + m > pi guard, validation in one place,
cosine, CE, CCS/NNCCS and the state dict."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from igfiqa.errors import ConfigError
from igfiqa.models.heads import Margin, MarginHead
from igfiqa.models.sharded import ShardedMarginHead


def numpy_cosine(embeddings: np.ndarray, weight: np.ndarray) -> np.ndarray:
    e = embeddings / np.linalg.norm(embeddings, axis=1, keepdims=True)
    w = weight / np.linalg.norm(weight, axis=1, keepdims=True)
    return e @ w.T


def test_arcface_logits_and_cosine_match_hand_computation():
    torch.manual_seed(0)
    head = MarginHead(8, 6, Margin("arcface", s=64.0, m=0.5))
    embeddings = torch.randn(5, 8, dtype=torch.float64)
    head = head.double()
    labels = torch.tensor([0, 3, 5, 3, 1])
    logits, cosine = head(embeddings, labels)

    cos = numpy_cosine(embeddings.numpy(), head.weight.detach().numpy())
    np.testing.assert_allclose(cosine.detach().numpy(), cos, atol=1e-12)
    torch.testing.assert_close(head.cosine(embeddings), cosine)

    expected = 64.0 * cos.copy()
    for i, y in enumerate(labels.tolist()):
        assert cos[i, y] > -math.cos(0.5)  # random vectors: the plain ArcFace branch
        expected[i, y] = 64.0 * math.cos(math.acos(cos[i, y]) + 0.5)
    np.testing.assert_allclose(logits.detach().numpy(), expected, atol=1e-9)

    log_softmax = (
        expected
        - np.log(np.exp(expected - expected.max(1, keepdims=True)).sum(1))[:, None]
        - expected.max(1, keepdims=True)
    )
    ce = -np.mean(log_softmax[np.arange(5), labels.numpy()])
    assert head.cross_entropy(logits, labels).item() == pytest.approx(ce, rel=1e-9)


def test_cosface_subtracts_the_margin_from_the_true_class_only():
    head = MarginHead(4, 3, Margin("cosface", s=30.0, m=0.35)).double()
    with torch.no_grad():
        head.weight.copy_(torch.eye(3, 4, dtype=torch.float64))
    embeddings = torch.tensor([[1.0, 1.0, 0.0, 0.0], [0.0, 0.0, 2.0, 0.0]], dtype=torch.float64)
    labels = torch.tensor([1, 2])
    logits, cosine = head(embeddings, labels)
    r = 1 / math.sqrt(2)
    expected_cos = torch.tensor([[r, r, 0.0], [0.0, 0.0, 1.0]], dtype=torch.float64)
    torch.testing.assert_close(cosine, expected_cos)
    expected = 30.0 * torch.tensor(
        [[r, r - 0.35, 0.0], [0.0, 0.0, 1.0 - 0.35]], dtype=torch.float64
    )
    torch.testing.assert_close(logits, expected)


def test_arcface_target_is_monotone_and_continuous_past_theta_plus_m_equal_pi():
    m = 0.5
    margin = Margin("arcface", m=m)
    cos = torch.linspace(-1.0, 1.0, 20001, dtype=torch.float64)
    target = margin.target_logit(cos)
    assert bool((target[1:] > target[:-1]).all()), "target logit must increase with cos(theta)"
    assert bool((target <= cos + 1e-12).all()), "the margin must never reward the true class"
    switch = -math.cos(m)
    # Right of the switch point: cos(theta + m); left: the linear continuation; both -1 there.
    above = cos > switch + 1e-9
    expected_above = torch.cos(torch.acos(cos[above]) + m)
    torch.testing.assert_close(target[above], expected_above, atol=1e-6, rtol=0)
    below = cos < switch
    torch.testing.assert_close(target[below], cos[below] - (1 - math.cos(m)))
    at = margin.target_logit(torch.tensor([switch - 1e-12, switch + 1e-12], dtype=torch.float64))
    torch.testing.assert_close(
        at, torch.tensor([-1.0, -1.0], dtype=torch.float64), atol=1e-5, rtol=0
    )


def test_gradients_are_finite_when_an_embedding_equals_its_prototype_or_its_opposite():
    head = MarginHead(3, 2)
    embeddings = torch.cat(
        [head.weight.detach()[:1] * 5, -head.weight.detach()[:1]]
    ).requires_grad_()
    logits, _ = head(embeddings, torch.tensor([0, 0]))
    head.cross_entropy(logits, torch.tensor([0, 0])).backward()
    assert torch.isfinite(embeddings.grad).all()
    assert torch.isfinite(head.weight.grad).all()


def test_weight_init_is_normal_with_std_001():
    torch.manual_seed(0)
    head = MarginHead(64, 2000)
    assert head.weight.shape == (2000, 64)
    assert head.weight.std().item() == pytest.approx(0.01, rel=0.02)
    assert abs(head.weight.mean().item()) < 1e-3


def test_ccs_nnccs_method_reads_the_cosine_matrix_without_gradient():
    head = MarginHead(4, 3)
    cosine = torch.tensor([[0.9, -0.2, 0.1], [0.3, 0.2, -0.7]], requires_grad=True)
    ccs, nnccs = head.ccs_nnccs(cosine, torch.tensor([0, 2]))
    torch.testing.assert_close(ccs, torch.tensor([0.9, -0.7]))
    torch.testing.assert_close(nnccs, torch.tensor([0.1, 0.3]))
    assert not ccs.requires_grad and not nnccs.requires_grad


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (
            {"kind": "sphereface"},
            "margin head kind must be one of ('arcface', 'cosface'), got 'sphereface'",
        ),
        ({"m": 2.0}, "ArcFace margin m must be in [0, pi/2), got 2.0"),
        ({"m": -0.1}, "ArcFace margin m must be in [0, pi/2), got -0.1"),
        ({"kind": "cosface", "m": 2.5}, "CosFace margin m must be in [0, 2), got 2.5"),
        ({"s": 0.0}, "margin head scale s must be > 0, got 0.0"),
        ({"s": float("nan")}, "margin head scale s must be > 0, got nan"),
    ],
)
def test_bad_margins_raise_config_errors(kwargs, message):
    with pytest.raises(ConfigError) as error:
        Margin(**kwargs)
    assert str(error.value) == message


@pytest.mark.parametrize("head_type", [MarginHead, ShardedMarginHead])
def test_bad_head_shapes_raise_the_same_config_errors_for_both_heads(head_type):
    with pytest.raises(ConfigError, match="at least 2 classes, got 1"):
        head_type(8, 1)
    with pytest.raises(ConfigError, match="num_features must be >= 1, got 0"):
        head_type(0, 4)


def test_margin_is_a_frozen_value_with_float_s_and_m():
    margin = Margin("cosface", s=30, m=0)
    assert (margin.s, margin.m) == (30.0, 0.0) and isinstance(margin.s, float)
    assert margin == Margin("cosface", 30.0, 0.0) and Margin() == Margin("arcface", 64.0, 0.5)
    with pytest.raises(AttributeError):
        margin.m = 2.5  # type: ignore[misc]


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_margin_call_equals_the_formulas(dtype):
    """CosFace ``s (cos - m)`` bit for bit; ArcFace ``s cos(theta + m)``; other entries ``s cos``."""
    g = torch.Generator().manual_seed(1)
    cosine = torch.rand(6, 5, generator=g, dtype=dtype) * 1.6 - 0.8  # inside the ArcFace branch
    labels = torch.tensor([0, 4, 2, 2, 1, 3])
    rows = torch.arange(6)

    cosface = Margin("cosface", s=30.0, m=0.35)(cosine, labels)
    expected = 30.0 * cosine.clone()
    expected[rows, labels] = (cosine[rows, labels] - 0.35) * 30.0
    assert torch.equal(cosface, expected)

    arcface = Margin("arcface", s=64.0, m=0.5)(cosine, labels)
    expected = 64.0 * cosine.clone()
    expected[rows, labels] = torch.cos(torch.acos(cosine[rows, labels]) + 0.5) * 64.0
    off = torch.ones_like(cosine, dtype=torch.bool)
    off[rows, labels] = False
    assert torch.equal(arcface[off], expected[off])
    tolerance = 64.0 * (1e-6 if dtype == torch.float32 else 1e-12)
    torch.testing.assert_close(arcface, expected, atol=tolerance, rtol=0)


def test_a_negative_label_means_no_true_class_in_these_columns():
    cosine = torch.tensor([[0.2, 0.9, -0.3], [0.5, 0.1, 0.4]])
    for margin in (Margin(), Margin("cosface", s=10.0, m=0.3)):
        logits = margin(cosine, torch.tensor([-1, 2]))
        assert torch.equal(logits[0], margin.s * cosine[0])
        assert torch.equal(logits[1, :2], margin.s * cosine[1, :2])
        assert logits[1, 2] < margin.s * cosine[1, 2]


def test_both_heads_call_the_margin_they_are_given():
    margin = Margin("cosface", s=8.0, m=0.2)
    for head in (MarginHead(4, 3, margin), ShardedMarginHead(4, 3, margin)):
        assert head.margin is margin
        embeddings, labels = torch.randn(5, 4), torch.tensor([0, 1, 2, 1, 0])
        logits, cosine = head(embeddings, labels)
        assert torch.equal(logits, margin(cosine, labels))
        assert "Margin(kind='cosface', s=8.0, m=0.2)" in repr(head)


@pytest.mark.parametrize("head_type", [MarginHead, ShardedMarginHead])
def test_state_dict_keeps_the_checkpoint_layout(head_type):
    """Checkpoints store the head as {"weight": (C, F)}: the margin adds no state."""
    head = head_type(8, 6, Margin("cosface", s=16.0, m=0.4))
    assert [(k, tuple(v.shape)) for k, v in head.state_dict().items()] == [("weight", (6, 8))]
    saved = {"weight": torch.randn(6, 8)}
    head.load_state_dict(saved)  # strict, as the trainer resumes
    assert torch.equal(head.weight.detach(), saved["weight"])


def test_low_precision_cosines_give_finite_logits_and_gradients():
    head = MarginHead(8, 5).to(torch.bfloat16)
    embeddings = torch.cat([head.weight.detach()[:2], torch.randn(2, 8).to(torch.bfloat16)])
    embeddings.requires_grad_()
    labels = torch.tensor([0, 1, 2, 3])
    logits, cosine = head(embeddings, labels)
    assert logits.dtype == torch.float32 and cosine.dtype == torch.float32  # computed in >= fp32
    head.cross_entropy(logits.float(), labels).backward()
    assert torch.isfinite(embeddings.grad.float()).all()
    assert torch.isfinite(head.weight.grad.float()).all()


def test_cosines_and_logits_are_float32_under_bf16_autocast() -> None:
    """The pseudo-labels derive from the cosines: they must not be rounded to bfloat16."""
    torch.manual_seed(0)
    head = MarginHead(16, 5)
    embeddings = torch.randn(4, 16)
    labels = torch.tensor([0, 1, 2, 3])
    with torch.autocast("cpu", dtype=torch.bfloat16):
        logits, cosine = head(embeddings.bfloat16(), labels)
    assert cosine.dtype == logits.dtype == torch.float32
    reference = torch.nn.functional.normalize(embeddings.bfloat16().float(), dim=1) @ (
        torch.nn.functional.normalize(head.weight, dim=1).T
    )
    torch.testing.assert_close(cosine, reference, rtol=1e-6, atol=1e-6)
