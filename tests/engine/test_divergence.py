"""Finding non-finite weights and wording a diverged run."""

from __future__ import annotations

from pathlib import Path

import torch

from igfiqa.engine.divergence import diverged_error, nonfinite_names, training_tensors


def test_non_finite_tensors_are_named_in_order() -> None:
    model, head = torch.nn.Linear(2, 2), torch.nn.Linear(2, 3, bias=False)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    model(torch.ones(1, 2)).sum().backward()
    optimizer.step()
    named = training_tensors(model, head, {"backbone": optimizer}, with_state=True)
    assert [n for n, _ in named][:3] == ["model.weight", "model.bias", "head.weight"]
    assert "optimizer.backbone.0.momentum_buffer" in dict(named)
    assert nonfinite_names(named) == [] and nonfinite_names([]) == []
    with torch.no_grad():
        head.weight[1, 0] = float("inf")
        model.bias[0] = float("nan")
    plain = training_tensors(model, head, {"backbone": optimizer}, with_state=False)
    assert nonfinite_names(plain) == ["model.bias", "head.weight"]


def test_the_divergence_message_names_the_step_the_tensor_and_what_to_do() -> None:
    error = diverged_error(
        step=3, where="model.conv1.weight", latest=Path("run/checkpoints/step_00000002.pt"),
        lr=0.1, scaled_lr=0.2, global_batch=512,
    )  # fmt: skip
    message = str(error)
    assert message.startswith("step 3: the weights are no longer finite")
    assert "first in model.conv1.weight" in message
    assert "optim.lr=0.1, 0.2 for the global batch of 512" in message
    assert "step_00000002.pt is the last good checkpoint" in message
    none = diverged_error(step=1, where="x", latest=None, lr=1.0, scaled_lr=1.0, global_batch=8)
    assert "no checkpoint was written" in str(none)
