"""compute_objective: CR-FIQA reduction by hand, gradient paths, split disjointness, guidance wiring."""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch

from igfiqa.errors import ConfigError
from igfiqa.method.augment import AugmentConfig, QualityAugmentation
from igfiqa.method.guidance import IntraClassGuidance
from igfiqa.method.objective import ObjectiveConfig, compute_objective, split_sizes
from igfiqa.models import create_model
from igfiqa.models.heads import MarginHead

NUM_CLASSES = 6
FEATURES = 16


def objective_setup(seed: int = 0, batch: int = 8, dtype=torch.float64):
    torch.manual_seed(seed)
    model = create_model("r18", width=0.125, input_size=16, num_features=FEATURES).to(dtype)
    head = MarginHead(FEATURES, NUM_CLASSES).to(dtype)
    images = (torch.rand(batch, 3, 16, 16) * 2 - 1).to(dtype)
    labels = torch.arange(batch) % NUM_CLASSES
    return model, head, images, labels


def hand_arcface_ce(embedding, weight, labels, s=64.0, m=0.5):
    e = embedding / embedding.norm(dim=1, keepdim=True)
    w = weight / weight.norm(dim=1, keepdim=True)
    cos = e @ w.T
    logits = s * cos.clone()
    for i, y in enumerate(labels.tolist()):
        c = cos[i, y].item()
        assert c > -math.cos(m)
        logits[i, y] = s * math.cos(math.acos(c) + m)
    log_prob = logits - torch.logsumexp(logits, dim=1, keepdim=True)
    ce = -log_prob[torch.arange(len(labels)), labels].mean()
    return ce, cos


def hand_smooth_l1(x, y, beta=0.5):
    d = (x - y).abs()
    return torch.where(d < beta, 0.5 * d**2 / beta, d - 0.5 * beta)


@pytest.mark.parametrize("formula", ["paper", "code"])
def test_crfiqa_mode_equals_ce_plus_10_smooth_l1_by_hand(formula):
    model, head, images, labels = objective_setup()
    config = ObjectiveConfig(fiqa_batch="same", cr_formula=formula)
    out = compute_objective(model, head, images, labels, config)
    with torch.no_grad():
        embedding, quality = model(images)  # train mode: same batch statistics
        ce, cos = hand_arcface_ce(embedding, head.weight, labels)
        ccs = cos[torch.arange(8), labels]
        nnccs = torch.stack(
            [max(cos[i, j] for j in range(NUM_CLASSES) if j != y) for i, y in enumerate(labels)]
        )
        cr = ccs / (nnccs + 1 + 1e-9) if formula == "paper" else ccs / nnccs.clamp(min=1e-3)
        quality_loss = hand_smooth_l1(quality.squeeze(1), cr).mean()
    torch.testing.assert_close(out.fr_loss, ce)
    torch.testing.assert_close(out.quality_loss, quality_loss)
    torch.testing.assert_close(out.loss.detach(), ce + 10 * quality_loss)
    torch.testing.assert_close(out.cr, cr)
    assert out.diagnostics["guidance_weight_mean"] == 1.0
    assert out.diagnostics["zero_weight_class_share"] == 0.0
    assert out.diagnostics["ccs_mean"] == pytest.approx(ccs.mean().item())
    assert out.diagnostics["nnccs_mean"] == pytest.approx(nnccs.mean().item())
    assert out.diagnostics["cr_mean"] == pytest.approx(cr.mean().item(), rel=1e-5)
    assert out.diagnostics["cr_std"] == pytest.approx(cr.std(correction=0).item(), rel=1e-4)


def test_same_mode_runs_one_forward_pass():
    model, head, images, labels = objective_setup()
    calls = []
    model.register_forward_hook(lambda *_: calls.append(1))
    compute_objective(model, head, images, labels, ObjectiveConfig(fiqa_batch="same"))
    assert len(calls) == 1
    calls.clear()
    compute_objective(model, head, images, labels, ObjectiveConfig(fiqa_batch="duplicate"))
    assert len(calls) == 2


def gradients(mode, quality_weight, backbone_grad, *, guidance=True):
    model, head, images, labels = objective_setup()
    config = ObjectiveConfig(
        fiqa_batch=mode, quality_weight=quality_weight, fiqa_backbone_grad=backbone_grad
    )
    augment = QualityAugmentation(AugmentConfig(jpeg_p=0.0), seed=1)
    g = IntraClassGuidance(NUM_CLASSES) if guidance else None
    compute_objective(
        model, head, images, labels, config, guidance=g, augment=augment
    ).loss.backward()
    backbone = torch.cat(
        [
            p.grad.flatten()
            for n, p in model.named_parameters()
            if p.grad is not None and not n.startswith("qs")
        ]
    )
    quality_head = torch.cat([model.qs.weight.grad.flatten(), model.qs.bias.grad.flatten()])
    return head.weight.grad.clone(), backbone, quality_head


@pytest.mark.parametrize("mode", ["same", "duplicate", "split"])
def test_margin_head_gets_no_gradient_from_the_quality_loss(mode):
    w_with, backbone_with, _ = gradients(mode, 10.0, True)
    w_without, backbone_without, _ = gradients(mode, 0.0, True)
    torch.testing.assert_close(w_with, w_without, rtol=0, atol=1e-12)
    assert not torch.allclose(backbone_with, backbone_without)  # the quality loss does reach it


@pytest.mark.parametrize("mode", ["same", "duplicate", "split"])
def test_backbone_gets_no_quality_gradient_when_backbone_grad_is_off(mode):
    _, backbone_with, quality_with = gradients(mode, 10.0, False)
    _, backbone_without, _ = gradients(mode, 0.0, False)
    torch.testing.assert_close(backbone_with, backbone_without, rtol=0, atol=1e-12)
    assert quality_with.abs().sum() > 0  # the quality head still learns


def test_split_mode_feeds_disjoint_samples_to_the_two_losses():
    model, head, images, labels = objective_setup(batch=8)
    config = ObjectiveConfig(fiqa_batch="split", split_ratio=0.25)
    assert split_sizes(8, 0.25) == (2, 6)

    def input_grad(quality_weight):
        x = images.clone().requires_grad_()
        cfg = dataclasses.replace(config, quality_weight=quality_weight)
        out = compute_objective(model, head, x, labels, cfg)
        out.loss.backward()
        return x.grad, out

    fr_only, out = input_grad(0.0)
    both, _ = input_grad(10.0)
    quality_part = both - fr_only
    assert fr_only[:2].abs().max() == 0  # the first 2 images never reach the FR loss
    assert fr_only[2:].abs().sum() > 0
    assert quality_part[2:].abs().max() < 1e-12  # the last 6 never reach the quality loss
    assert quality_part[:2].abs().sum() > 0
    assert out.diagnostics["quality_batch"] == 2 and out.diagnostics["fr_batch"] == 6
    assert out.quality_labels.tolist() == labels[:2].tolist()


def test_split_sizes_are_bounded():
    assert split_sizes(8, 0.5) == (4, 4)
    assert split_sizes(8, 0.01) == (1, 7)
    assert split_sizes(8, 0.99) == (7, 1)
    with pytest.raises(ConfigError, match="at least 2"):
        split_sizes(1, 0.5)


def test_quality_stream_is_its_own_forward_pass_on_augmented_images():
    model, head, images, labels = objective_setup()
    config = ObjectiveConfig(fiqa_batch="duplicate")
    out = compute_objective(
        model, head, images, labels, config, augment=QualityAugmentation(seed=9)
    )
    augmented = QualityAugmentation(seed=9)(images)
    with torch.no_grad():
        embedding, quality = model(augmented)  # batch statistics of the augmented batch alone
        ce_clean, _ = hand_arcface_ce(model(images)[0], head.weight, labels)
        _, cos = hand_arcface_ce(embedding, head.weight, labels)
    ccs = cos[torch.arange(8), labels]
    masked = cos.scatter(1, labels[:, None], float("-inf"))
    cr = ccs / (masked.max(1).values + 1 + 1e-9)
    torch.testing.assert_close(out.cr, cr)
    torch.testing.assert_close(out.quality, quality.squeeze(1))
    torch.testing.assert_close(out.fr_loss, ce_clean)


@pytest.mark.parametrize(
    ("mode", "source"),
    [
        ("duplicate", "augmented"),
        ("duplicate", "clean"),
        ("split", "augmented"),
        ("split", "clean"),
    ],
)
def test_guidance_is_updated_with_the_ccs_of_the_ema_source(mode, source):
    model, head, images, labels = objective_setup()
    config = ObjectiveConfig(fiqa_batch=mode, ema_source=source)
    guidance = IntraClassGuidance(NUM_CLASSES)
    compute_objective(
        model, head, images, labels, config, guidance=guidance, augment=QualityAugmentation(seed=2)
    )
    augmented = QualityAugmentation(seed=2)(images[:4] if mode == "split" else images)
    with torch.no_grad():
        if source == "augmented":
            stream, stream_labels = augmented, labels[:4] if mode == "split" else labels
        else:  # split: the clean FR part; duplicate: the clean batch
            stream, stream_labels = (
                (images[4:], labels[4:]) if mode == "split" else (images, labels)
            )
        _, cos = hand_arcface_ce(model(stream)[0], head.weight, stream_labels)
    expected = IntraClassGuidance(NUM_CLASSES)
    expected.update(stream_labels, cos[torch.arange(len(stream_labels)), stream_labels])
    torch.testing.assert_close(guidance.values, expected.values)


def test_guided_quality_loss_is_the_weighted_mean_over_the_batch():
    model, head, images, labels = objective_setup()
    guidance = IntraClassGuidance(NUM_CLASSES)
    state = guidance.state_dict()
    state["values"] = torch.tensor([0.0, 0.5, 0.5, 0.5, 0.5, 0.25])  # class 0 far below the mean
    state["momentum"] = 1.0  # freeze v so the weights are known in advance
    guidance.load_state_dict(state)
    out = compute_objective(
        model, head, images, labels, ObjectiveConfig(fiqa_batch="same"), guidance=guidance
    )
    v = [0.0, 0.5, 0.5, 0.5, 0.5, 0.25]
    mean = sum(v) / 6
    std = (sum((x - mean) ** 2 for x in v) / 5) ** 0.5
    class_w = [1 + min(max((x - mean) / (std + 1e-6), -1), 0) for x in v]
    assert class_w[0] == 0.0 and 0 < class_w[5] < 1
    w = torch.tensor([class_w[y] for y in labels.tolist()], dtype=torch.float64)
    torch.testing.assert_close(out.weights, w, atol=1e-6, rtol=0)
    with torch.no_grad():
        _, quality = model(images)
    per_sample = hand_smooth_l1(quality.squeeze(1), out.cr)
    torch.testing.assert_close(out.quality_loss, (w * per_sample).sum() / 8, atol=1e-6, rtol=0)
    assert out.diagnostics["zero_weight_class_share"] == pytest.approx(1 / 6)
    assert out.diagnostics["guidance_weight_mean"] == pytest.approx(w.mean().item())


def test_model_without_quality_head_is_rejected():
    _, head, images, labels = objective_setup(dtype=torch.float32)
    model = create_model(
        "r18", width=0.125, input_size=16, num_features=FEATURES, quality_head=False
    )
    with pytest.raises(ConfigError, match="quality head"):
        compute_objective(model, head, images, labels, ObjectiveConfig())


def test_config_validation_names_the_field():
    with pytest.raises(ConfigError, match="fiqa_batch"):
        ObjectiveConfig(fiqa_batch="both")
    with pytest.raises(ConfigError, match="split_ratio"):
        ObjectiveConfig(split_ratio=1.0)
    with pytest.raises(ConfigError, match="ema_source"):
        ObjectiveConfig(ema_source="noisy")
    with pytest.raises(ConfigError, match="cr_formula"):
        ObjectiveConfig(cr_formula="ratio")
    with pytest.raises(ConfigError, match="quality_bn"):
        ObjectiveConfig(quality_bn="shared")


def test_diagnostics_are_floats_and_finite():
    model, head, images, labels = objective_setup(dtype=torch.float32)
    out = compute_objective(
        model,
        head,
        images,
        labels,
        ObjectiveConfig(),
        guidance=IntraClassGuidance(NUM_CLASSES),
        augment=QualityAugmentation(),
    )
    expected = {
        "fr_loss",
        "quality_loss",
        "guidance_weight_mean",
        "zero_weight_class_share",
        "cr_mean",
        "cr_std",
        "ccs_mean",
        "nnccs_mean",
    }
    assert expected <= set(out.diagnostics)
    assert all(isinstance(v, float) and math.isfinite(v) for v in out.diagnostics.values())
    assert out.diagnostics["fr_loss"] == pytest.approx(out.fr_loss.item())
    assert not out.fr_loss.requires_grad and not out.quality_loss.requires_grad
    assert out.loss.requires_grad


def _bn_running(model):
    return [
        (m.running_mean.clone(), m.running_var.clone())
        for m in model.modules()
        if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)
    ]


def _same_running(a, b):
    return all(
        torch.equal(x[0], y[0]) and torch.equal(x[1], y[1]) for x, y in zip(a, b, strict=True)
    )


@pytest.mark.parametrize("mode", ["duplicate", "split"])
def test_frozen_stats_quality_pass_leaves_the_running_statistics_of_the_clean_pass(mode):
    model, head, images, labels = objective_setup()
    augment = QualityAugmentation(seed=3)
    config = ObjectiveConfig(fiqa_batch=mode, quality_bn="frozen_stats")
    frozen = compute_objective(model, head, images, labels, config, augment=augment)
    after_frozen = _bn_running(model)
    # The same step with only the FR pass: the running statistics it leaves must be identical.
    model2, _, _, _ = objective_setup()
    fr_images = images if mode == "duplicate" else images[4:]
    model2(fr_images)
    assert _same_running(after_frozen, _bn_running(model2))
    # The quality pass still normalises with its own batch statistics (training mode).
    q_images = QualityAugmentation(seed=3)(images if mode == "duplicate" else images[:4])
    with torch.no_grad():
        _, quality = model2(q_images)
    torch.testing.assert_close(frozen.quality, quality.squeeze(1))
    # momentum is put back afterwards
    assert all(m.momentum == 0.1 for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d))
    # and "separate" does move the running statistics with the degraded batch
    model3, head3, _, _ = objective_setup()
    separate = ObjectiveConfig(fiqa_batch=mode, quality_bn="separate")
    compute_objective(model3, head3, images, labels, separate, augment=QualityAugmentation(seed=3))
    assert not _same_running(_bn_running(model3), after_frozen)


def test_concat_quality_bn_is_one_pass_over_clean_and_augmented_images():
    model, head, images, labels = objective_setup()
    config = ObjectiveConfig(fiqa_batch="duplicate", quality_bn="concat")
    out = compute_objective(
        model, head, images, labels, config, augment=QualityAugmentation(seed=5)
    )
    augmented = QualityAugmentation(seed=5)(images)
    model2, head2, _, _ = objective_setup()
    with torch.no_grad():
        embedding, quality = model2(torch.cat([images, augmented]))  # shared batch statistics
    ce, _ = hand_arcface_ce(embedding[:8], head2.weight, labels)
    _, cos = hand_arcface_ce(embedding[8:], head2.weight, labels)
    ccs = cos[torch.arange(8), labels]
    masked = cos.scatter(1, labels[:, None], float("-inf"))
    torch.testing.assert_close(out.fr_loss, ce)
    torch.testing.assert_close(out.quality, quality[8:].squeeze(1))
    torch.testing.assert_close(out.cr, ccs / (masked.max(1).values + 1 + 1e-9))
    # one pass: one running-statistics update, from the concatenated batch's statistics
    assert _same_running(_bn_running(model), _bn_running(model2))


def test_clean_cr_diagnostic_is_the_cr_of_the_unaugmented_images():
    model, head, images, labels = objective_setup()
    config = ObjectiveConfig(fiqa_batch="duplicate")
    out = compute_objective(
        model, head, images, labels, config, augment=QualityAugmentation(seed=1)
    )
    model2, head2, _, _ = objective_setup()
    with torch.no_grad():
        _, cos = hand_arcface_ce(model2(images)[0], head2.weight, labels)
    ccs = cos[torch.arange(8), labels]
    masked = cos.scatter(1, labels[:, None], float("-inf"))
    clean_cr = ccs / (masked.max(1).values + 1 + 1e-9)
    assert out.diagnostics["cr_clean_mean"] == pytest.approx(clean_cr.mean().item(), rel=1e-6)
    assert out.diagnostics["cr_mean"] == pytest.approx(out.cr.mean().item(), rel=1e-6)
    same = compute_objective(model, head, images, labels, ObjectiveConfig(fiqa_batch="same"))
    assert same.diagnostics["cr_clean_mean"] == same.diagnostics["cr_mean"]
