"""CR-FIQA's pseudo-labels: class-centre similarity (CCS), nearest negative (NNCCS), certainty ratio.

All functions return tensors without gradient: the pseudo-label is a regression target.
"""

from __future__ import annotations

from torch import Tensor

from igfiqa.errors import ConfigError

CODE_NNCCS_FLOOR = 1e-3


def ccs_nnccs(cosine: Tensor, labels: Tensor) -> tuple[Tensor, Tensor]:
    """Class-centre similarity and nearest negative class-centre similarity per sample.

    ``CCS_i = cosine[i, y_i]`` and ``NNCCS_i = max_{j != y_i} cosine[i, j]`` (the true class is
    masked with ``-inf``, so a negative NNCCS is kept as is).

    Args:
        cosine: (B, C) cosines between the embeddings and the class prototypes, C >= 2.
        labels: (B,) integer class indices in [0, C).

    Returns:
        ``(ccs, nnccs)``, two detached (B,) tensors of the cosine's dtype.
    """
    if cosine.ndim != 2 or labels.ndim != 1 or labels.shape[0] != cosine.shape[0]:
        raise ValueError(
            f"ccs_nnccs needs cosine (B, C) and labels (B,), got {tuple(cosine.shape)} and "
            f"{tuple(labels.shape)}"
        )
    if cosine.shape[1] < 2:
        raise ConfigError("the certainty ratio needs at least two classes (NNCCS is undefined)")
    cosine = cosine.detach()
    index = labels.long().unsqueeze(1)
    ccs = cosine.gather(1, index).squeeze(1)
    negatives = cosine.scatter(1, index, float("-inf"))
    nnccs = negatives.amax(dim=1)
    return ccs, nnccs


def certainty_ratio(
    ccs: Tensor, nnccs: Tensor, formula: str = "paper", eps: float = 1e-9
) -> Tensor:
    """The certainty ratio CR, CR-FIQA's quality pseudo-label.

    - ``paper``: ``CR = CCS / (NNCCS + 1 + eps)`` (bounded, the CR-FIQA paper's form, default);
    - ``code``: ``CR = CCS / max(NNCCS, 1e-3)``: the official CR-FIQA code trains with
      ``CCS / NNCCS``; the ``1e-3`` floor is igfiqa's (the official code masks the true class with
      ``-1e-12`` and can divide by a value <= 0, docs/method.md), and changes nothing while
      NNCCS >= 1e-3.

    Returns a detached tensor of the inputs' shape.
    """
    ccs, nnccs = ccs.detach(), nnccs.detach()
    if formula == "paper":
        return ccs / (nnccs + (1.0 + eps))
    if formula == "code":
        return ccs / nnccs.clamp(min=CODE_NNCCS_FLOOR)
    raise ConfigError(f"cr_formula must be 'paper' or 'code', got {formula!r}")


__all__ = ["CODE_NNCCS_FLOOR", "ccs_nnccs", "certainty_ratio"]
