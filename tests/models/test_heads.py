"""MarginHead: ArcFace / CosFace logits, the theta + m > pi guard, cosine, CE and CCS/NNCCS."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from igfiqa.errors import ConfigError
from igfiqa.models.heads import MarginHead


def numpy_cosine(embeddings: np.ndarray, weight: np.ndarray) -> np.ndarray:
    e = embeddings / np.linalg.norm(embeddings, axis=1, keepdims=True)
    w = weight / np.linalg.norm(weight, axis=1, keepdims=True)
    return e @ w.T


def test_arcface_logits_and_cosine_match_hand_computation():
    torch.manual_seed(0)
    head = MarginHead(8, 6, kind="arcface", s=64.0, m=0.5)
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
    head = MarginHead(4, 3, kind="cosface", s=30.0, m=0.35).double()
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
    head = MarginHead(2, 2, kind="arcface", m=m).double()
    cos = torch.linspace(-1.0, 1.0, 20001, dtype=torch.float64)
    target = head.target_logit(cos)
    assert bool((target[1:] > target[:-1]).all()), "target logit must increase with cos(theta)"
    assert bool((target <= cos + 1e-12).all()), "the margin must never reward the true class"
    switch = -math.cos(m)
    # Right of the switch point: cos(theta + m); left: the linear continuation; both -1 there.
    above = cos > switch + 1e-9
    expected_above = torch.cos(torch.acos(cos[above]) + m)
    torch.testing.assert_close(target[above], expected_above, atol=1e-6, rtol=0)
    below = cos < switch
    torch.testing.assert_close(target[below], cos[below] - (1 - math.cos(m)))
    at = head.target_logit(torch.tensor([switch - 1e-12, switch + 1e-12], dtype=torch.float64))
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
    ("kwargs", "field"),
    [
        ({"kind": "sphereface"}, "kind"),
        ({"m": 2.0}, "margin"),
        ({"s": 0.0}, "scale"),
    ],
)
def test_bad_options_raise_config_errors(kwargs, field):
    with pytest.raises(ConfigError, match=field):
        MarginHead(8, 4, **kwargs)
    with pytest.raises(ConfigError, match="2 classes"):
        MarginHead(8, 1)


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
