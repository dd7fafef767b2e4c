"""The sharded margin head equals the unsharded MarginHead on the same data (two gloo processes);
the DDP / compile unwrap the trainer and the objective share."""

from __future__ import annotations

import itertools

import pytest
import torch

from igfiqa.collective import unwrap
from igfiqa.engine.trainer import train
from igfiqa.errors import ConfigError
from igfiqa.method.pseudo_labels import certainty_ratio
from igfiqa.models.heads import Margin, MarginHead
from igfiqa.models.sharded import ShardedMarginHead, class_ranges

from ._dist import run_gloo
from ._tiny import tiny_config

NUM_CLASSES, FEATURES = 7, 8
LOCAL_SIZES = (5, 3)  # unequal local batches exercise the padded gathers


def _data() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(123)
    weight = torch.randn(NUM_CLASSES, FEATURES, generator=g)
    embeddings = torch.randn(sum(LOCAL_SIZES), FEATURES, generator=g)
    labels = torch.tensor([0, 6, 3, 3, 5, 1, 6, 2])
    # Make one sample nearly aligned with its own prototype and one far (ArcFace continuation branch).
    embeddings[2] = weight[3] + 0.01 * embeddings[2]
    embeddings[5] = -weight[1]
    return weight, embeddings, labels


def _reference(kind: str) -> dict[str, torch.Tensor]:
    weight, embeddings, labels = _data()
    head = MarginHead(FEATURES, NUM_CLASSES, Margin(kind, s=16.0, m=0.4))
    with torch.no_grad():
        head.weight.copy_(weight)
    emb = embeddings.clone().requires_grad_(True)
    logits, cosine = head(emb, labels)
    loss = head.cross_entropy(logits, labels)
    loss.backward()
    ccs, nnccs = head.ccs_nnccs(cosine, labels)
    return {
        "loss": loss.detach(),
        "ccs": ccs,
        "nnccs": nnccs,
        "cr": certainty_ratio(ccs, nnccs),
        "emb_grad": emb.grad,
        "weight_grad": head.weight.grad,
    }


def _sharded_worker(rank: int, world: int, kind: str, scale: float) -> None:
    torch.manual_seed(0)
    weight, embeddings, labels = _data()
    ref = _reference(kind)
    head = ShardedMarginHead(
        FEATURES, NUM_CLASSES, Margin(kind, s=16.0, m=0.4), embedding_grad_scale=scale
    )
    start, end = class_ranges(NUM_CLASSES, world)[rank]
    assert (head.class_start, head.class_end) == (start, end)
    head.load_full_weight(weight)
    lo = sum(LOCAL_SIZES[:rank])
    hi = lo + LOCAL_SIZES[rank]
    emb = embeddings[lo:hi].clone().requires_grad_(True)
    logits, cosine = head(emb, labels[lo:hi])
    assert logits.shape == (sum(LOCAL_SIZES), end - start)
    loss = head.cross_entropy(logits, labels[lo:hi])
    loss.backward()
    ccs, nnccs = head.ccs_nnccs(cosine, labels[lo:hi])
    torch.testing.assert_close(loss.detach(), ref["loss"])
    torch.testing.assert_close(ccs, ref["ccs"][lo:hi])
    torch.testing.assert_close(nnccs, ref["nnccs"][lo:hi])
    torch.testing.assert_close(certainty_ratio(ccs, nnccs), ref["cr"][lo:hi])
    torch.testing.assert_close(emb.grad, scale * ref["emb_grad"][lo:hi])
    torch.testing.assert_close(head.weight.grad, ref["weight_grad"][start:end])
    torch.testing.assert_close(head.full_weight(), weight)
    # The cosine path alone (augmented stream) gives the same pseudo-labels.
    ccs2, nnccs2 = head.ccs_nnccs(head.cosine(embeddings[lo:hi]), labels[lo:hi])
    torch.testing.assert_close(ccs2, ref["ccs"][lo:hi])
    torch.testing.assert_close(nnccs2, ref["nnccs"][lo:hi])


class _Compiled(torch.nn.Module):
    """What ``torch.compile(module)`` returns, for ``unwrap``: the module as ``_orig_mod`` (the real
    one costs seconds of imports)."""

    def __init__(self, module: torch.nn.Module) -> None:
        super().__init__()
        self._orig_mod = module


def _both_kinds(rank: int, world: int) -> None:
    _sharded_worker(rank, world, "arcface", 1.0)
    _sharded_worker(rank, world, "cosface", 2.0)
    model = torch.nn.Linear(2, 2)
    ddp = torch.nn.parallel.DistributedDataParallel(model)
    assert unwrap(ddp) is model and unwrap(_Compiled(ddp)) is model


@pytest.mark.slow  # two spawned processes: ~10 s on a loaded 2-core machine
def test_sharded_head_matches_unsharded_head_in_two_processes() -> None:
    """CE, CCS, NNCCS, CR and the embedding / weight-shard gradients (ArcFace, CosFace x2 scale);
    ``unwrap`` finds the model inside DistributedDataParallel (and compile around it)."""
    run_gloo(_both_kinds, 2)


def test_sharded_head_single_process_equals_margin_head() -> None:
    for kind in ("arcface", "cosface"):
        weight, embeddings, labels = _data()
        ref = _reference(kind)
        head = ShardedMarginHead(FEATURES, NUM_CLASSES, Margin(kind, s=16.0, m=0.4))
        head.load_full_weight(weight)
        emb = embeddings.clone().requires_grad_(True)
        logits, cosine = head(emb, labels)
        loss = head.cross_entropy(logits, labels)
        loss.backward()
        ccs, nnccs = head.ccs_nnccs(cosine, labels)
        torch.testing.assert_close(loss.detach(), ref["loss"])
        torch.testing.assert_close(ccs, ref["ccs"])
        torch.testing.assert_close(nnccs, ref["nnccs"])
        torch.testing.assert_close(emb.grad, ref["emb_grad"])
        torch.testing.assert_close(head.weight.grad, ref["weight_grad"])


def test_class_ranges_cover_all_classes_evenly() -> None:
    for classes in (2, 7, 10, 85742):
        for world in (1, 2, 3, 8):
            if world > classes:
                continue
            ranges = class_ranges(classes, world)
            assert ranges[0][0] == 0 and ranges[-1][1] == classes
            assert all(a[1] == b[0] for a, b in itertools.pairwise(ranges))
            sizes = [end - start for start, end in ranges]
            assert max(sizes) - min(sizes) <= 1


def test_same_seed_same_prototypes_whatever_the_sharding() -> None:
    torch.manual_seed(5)
    full = MarginHead(FEATURES, NUM_CLASSES).weight.detach()
    torch.manual_seed(5)
    sharded = ShardedMarginHead(FEATURES, NUM_CLASSES)
    torch.testing.assert_close(sharded.full_weight(), full)


@pytest.mark.parametrize(
    ("margin", "message"),
    [
        (["head.kind=cosface", "head.m=2.5"], "CosFace margin m must be in [0, 2), got 2.5"),
        (["head.kind=arcface", "head.m=2"], "ArcFace margin m must be in [0, pi/2), got 2.0"),
    ],
)
def test_the_sharded_head_refuses_the_margins_the_replicated_one_refuses(
    tmp_path, margin, message
) -> None:
    """The config allows m < pi for both kinds; the one Margin refuses it for both heads alike."""
    for sharded in ("false", "true"):
        config = tiny_config(*margin, f"head.sharded={sharded}")
        with pytest.raises(ConfigError) as error:
            train(config, out_dir=tmp_path / sharded, max_steps=1, progress=False)
        assert str(error.value) == message


def test_unwrap_peels_data_parallel_and_compile_wrappers_only() -> None:
    model = torch.nn.Linear(2, 2)
    assert unwrap(model) is model
    assert unwrap(_Compiled(model)) is model
    assert unwrap(torch.nn.DataParallel(_Compiled(model))) is model
    assert unwrap(_Compiled(torch.nn.DataParallel(model))) is model

    class Holder(torch.nn.Module):  # a ``.module`` attribute alone is no wrapper
        def __init__(self) -> None:
            super().__init__()
            self.module = model

    holder = Holder()
    assert unwrap(holder) is holder
