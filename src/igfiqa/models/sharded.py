"""A margin head whose classes are split across processes (model parallel), for very many identities.

:class:`ShardedMarginHead` has the same four methods as :class:`igfiqa.models.heads.MarginHead`
(``forward -> (logits, cosine)``, ``cosine``, ``cross_entropy``, ``ccs_nnccs``), so the objective
runs unchanged, and calls the same :class:`~igfiqa.models.heads.Margin`. Rank ``r`` of ``W``
processes holds the prototypes of a contiguous block of classes.

* The embeddings of all ranks are gathered (with gradient) so that every shard scores the whole
  global batch: ``logits`` and ``cosine`` are ``(B_global, C_local)``.
* Softmax cross-entropy uses two all-reduces: the row maximum (MAX) and the sum of exponentials (SUM);
  the true-class logit comes from the shard owning the class. The loss is the mean over the global
  batch, identical on every rank. Its backward needs no collective:
  ``d loss / d logits = (softmax - onehot) / B_global`` on the local columns.
* ``CCS`` comes from the owning shard; ``NNCCS`` is the *global* maximum over all shards (MAX
  all-reduce of each shard's masked maximum). Both are returned for the local samples only.
* The gradient reaching the gathered embeddings is summed over ranks (each shard contributes its
  classes) and each rank keeps the rows of its own samples; ``embedding_grad_scale`` multiplies it.
  With scale 1 (default) every gradient equals the unsharded head's on the global batch. A
  data-parallel trainer that *averages* backbone gradients over ``W`` ranks sets it to ``W``.

In one process (no process group) it behaves exactly like ``MarginHead``.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from igfiqa import collective
from igfiqa.errors import CheckpointError, ConfigError
from igfiqa.models.heads import Margin, init_prototypes, prototype_cosine


def class_ranges(num_classes: int, world_size: int) -> list[tuple[int, int]]:
    """Contiguous ``[start, end)`` class blocks, sizes differing by at most one (first ranks larger)."""
    base, extra = divmod(num_classes, world_size)
    ranges, start = [], 0
    for rank in range(world_size):
        size = base + (1 if rank < extra else 0)
        ranges.append((start, start + size))
        start += size
    return ranges


class _GatherEmbeddings(torch.autograd.Function):
    """All-gather rows with autograd: backward sums the gradient over ranks and keeps own rows."""

    @staticmethod
    def forward(ctx: Any, local: Tensor, sizes: list[int], rank: int, scale: float, group: Any):
        ctx.sizes, ctx.rank, ctx.scale, ctx.group = sizes, rank, scale, group
        return collective.all_gather_rows(local.detach(), group, sizes)

    @staticmethod
    def backward(ctx: Any, grad: Tensor):
        grad = grad.contiguous().clone()
        collective.all_reduce(grad, "sum", ctx.group)
        start = sum(ctx.sizes[: ctx.rank])
        local = grad[start : start + ctx.sizes[ctx.rank]]
        if ctx.scale != 1.0:
            local = local * ctx.scale
        return local, None, None, None, None


class _ShardedCrossEntropy(torch.autograd.Function):
    """Mean softmax cross-entropy over classes split across ranks (collectives in forward only)."""

    @staticmethod
    def forward(ctx: Any, logits: Tensor, local_target: Tensor, owned: Tensor, group: Any):
        logits = logits.float()
        row_max = logits.detach().amax(dim=1)
        collective.all_reduce(row_max, "max", group)
        exp = torch.exp(logits - row_max.unsqueeze(1))
        denominator = exp.sum(dim=1)
        index = local_target.clamp(min=0).unsqueeze(1)
        target = torch.where(owned, logits.gather(1, index).squeeze(1), torch.zeros_like(row_max))
        collective.all_reduce(denominator, "sum", group)
        collective.all_reduce(target, "sum", group)
        per_sample = torch.log(denominator) + row_max - target
        softmax = exp / denominator.unsqueeze(1)
        ctx.save_for_backward(softmax, index, owned)
        return per_sample.mean()

    @staticmethod
    def backward(ctx: Any, grad_out: Tensor):
        softmax, index, owned = ctx.saved_tensors
        grad = softmax.clone()
        rows = torch.nonzero(owned, as_tuple=True)[0]
        grad[rows, index[rows, 0]] -= 1.0
        grad *= grad_out / softmax.shape[0]
        return grad, None, None, None


class ShardedMarginHead(nn.Module):
    """ArcFace / CosFace head with the ``C`` prototypes split over the ranks of ``group``.

    Args:
        num_features, num_classes, margin: as :class:`~igfiqa.models.heads.MarginHead`.
        group: process group (default: the world; no group = one process holding every class).
        embedding_grad_scale: factor on the gradient returned to the local embeddings (see module doc).

    The prototypes are initialised like ``MarginHead`` (normal, std 0.01) by drawing the *full*
    matrix from the (rank-identical) global generator and keeping this rank's rows, so a seed gives
    the same model whatever the number of shards.
    """

    def __init__(
        self,
        num_features: int,
        num_classes: int,
        margin: Margin | None = None,
        *,
        group: Any = None,
        embedding_grad_scale: float = 1.0,
    ) -> None:
        super().__init__()
        self.margin = Margin() if margin is None else margin
        full = init_prototypes(num_features, num_classes)
        self.num_classes, self.num_features = full.shape
        self.group = group
        self.embedding_grad_scale = float(embedding_grad_scale)
        self.rank = collective.rank(group)
        self.world_size = collective.world_size(group)
        if self.world_size > self.num_classes:
            raise ConfigError(
                f"cannot split {self.num_classes} classes over {self.world_size} ranks"
            )
        self.class_start, self.class_end = class_ranges(self.num_classes, self.world_size)[
            self.rank
        ]
        self.weight = nn.Parameter(full[self.class_start : self.class_end].clone())

    @property
    def num_local_classes(self) -> int:
        return self.class_end - self.class_start

    def extra_repr(self) -> str:
        return (
            f"num_features={self.num_features}, num_classes={self.num_classes}, {self.margin}, "
            f"shard={self.rank}/{self.world_size} "
            f"classes [{self.class_start}, {self.class_end})"
        )

    # ------------------------------------------------------------------------------ collectives
    def _gather_embeddings(self, embeddings: Tensor) -> Tensor:
        if not collective.active(self.group):
            return embeddings
        sizes = collective.gather_sizes(embeddings.shape[0], embeddings.device, self.group)
        return _GatherEmbeddings.apply(
            embeddings, sizes, self.rank, self.embedding_grad_scale, self.group
        )

    def _global_labels(self, labels: Tensor, num_rows: int) -> tuple[Tensor, int, int]:
        """Labels of the global batch, and this rank's row offset and count."""
        labels = labels.long().reshape(-1)
        if not collective.active(self.group):
            return labels, 0, labels.shape[0]
        sizes = collective.gather_sizes(labels.shape[0], labels.device, self.group)
        if sum(sizes) != num_rows:
            raise ValueError(
                f"pass this rank's local labels ({labels.shape[0]} here), the global batch has "
                f"{num_rows} rows but the ranks hold {sum(sizes)} labels in total"
            )
        offset = sum(sizes[: self.rank])
        return collective.all_gather_rows(labels, self.group, sizes), offset, labels.shape[0]

    def _local_targets(self, labels: Tensor) -> tuple[Tensor, Tensor]:
        owned = (labels >= self.class_start) & (labels < self.class_end)
        return torch.where(owned, labels - self.class_start, torch.full_like(labels, -1)), owned

    # ------------------------------------------------------------------------------ the four methods
    def cosine(self, embeddings: Tensor) -> Tensor:
        """(B_global, C_local) cosines of the gathered embeddings with this rank's prototypes."""
        gathered = self._gather_embeddings(embeddings)
        return prototype_cosine(gathered, self.weight)

    def forward(self, embeddings: Tensor, labels: Tensor) -> tuple[Tensor, Tensor]:
        """``(logits, cosine)``, both (B_global, C_local); margin on the owning shard only."""
        cosine = self.cosine(embeddings)
        global_labels, _, _ = self._global_labels(labels, cosine.shape[0])
        local, _ = self._local_targets(global_labels)
        return self.margin(cosine, local), cosine

    def cross_entropy(self, logits: Tensor, labels: Tensor) -> Tensor:
        """Mean softmax cross-entropy over the global batch (the same value on every rank)."""
        global_labels, _, _ = self._global_labels(labels, logits.shape[0])
        local, owned = self._local_targets(global_labels)
        return _ShardedCrossEntropy.apply(logits, local, owned, self.group)

    @torch.no_grad()
    def ccs_nnccs(self, cosine: Tensor, labels: Tensor) -> tuple[Tensor, Tensor]:
        """Detached CCS (owning shard) and NNCCS (global max over shards) of the local samples."""
        global_labels, offset, count = self._global_labels(labels, cosine.shape[0])
        local, owned = self._local_targets(global_labels)
        cosine = cosine.detach()
        index = local.clamp(min=0).unsqueeze(1)
        ccs = torch.where(owned, cosine.gather(1, index).squeeze(1), torch.zeros_like(cosine[:, 0]))
        masked = torch.where(owned.unsqueeze(1), cosine.scatter(1, index, float("-inf")), cosine)
        nnccs = masked.amax(dim=1) if masked.shape[1] else torch.full_like(ccs, float("-inf"))
        collective.all_reduce(ccs, "sum", self.group)
        collective.all_reduce(nnccs, "max", self.group)
        return ccs[offset : offset + count], nnccs[offset : offset + count]

    # ------------------------------------------------------------------------------ whole-matrix I/O
    def full_weight(self) -> Tensor:
        """The (C, F) prototype matrix assembled from all shards (a detached copy, on every rank)."""
        local = self.weight.detach()
        if not collective.active(self.group):
            return local.clone()
        sizes = [end - start for start, end in class_ranges(self.num_classes, self.world_size)]
        return collective.all_gather_rows(local, self.group, sizes)

    def gather_shards(self, tensor: Tensor) -> Tensor:
        """Assemble any per-shard (C_local, ...) tensor (e.g. a momentum buffer) into (C, ...)."""
        if not collective.active(self.group):
            return tensor.detach().clone()
        sizes = [end - start for start, end in class_ranges(self.num_classes, self.world_size)]
        return collective.all_gather_rows(tensor.detach(), self.group, sizes)

    def shard_of(self, full: Tensor) -> Tensor:
        """This rank's rows of a (C, ...) tensor."""
        if full.shape[0] != self.num_classes:
            raise CheckpointError(
                f"the saved head has {full.shape[0]} classes but this run has {self.num_classes}"
            )
        return full[self.class_start : self.class_end].clone()

    def load_full_weight(self, full: Tensor) -> None:
        """Set this shard from the full (C, F) matrix (re-splits for any world size)."""
        with torch.no_grad():
            self.weight.copy_(self.shard_of(full).to(self.weight))


__all__ = ["ShardedMarginHead", "class_ranges"]
