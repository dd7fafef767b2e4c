"""Quality methods for evaluation, one module each, registered by name (see :mod:`.base`).

``--quality`` specs: an igfiqa model (``model:PATH`` or a path), ``csv:PATH`` (rows
``path,quality``), ``random[:SEED]``, ``ground-truth`` (alias ``oracle``), ``embedding-norm``,
``serfiq[:m=,p=,seed=,model=]`` and, from Python, any function.
"""

from __future__ import annotations

from igfiqa.evaluation.quality import (  # noqa: F401  (each module registers its method)
    csv_scores,
    embedding_norm,
    oracle,
    python_function,
    quality_model,
    random_baseline,
    serfiq,
)
from igfiqa.evaluation.quality.base import (
    QUALITY_METHODS,
    Consumer,
    QualityMethod,
    SampleContext,
    list_quality_methods,
    parse_quality_spec,
    register,
)

__all__ = [
    "QUALITY_METHODS",
    "Consumer",
    "QualityMethod",
    "SampleContext",
    "list_quality_methods",
    "parse_quality_spec",
    "register",
]
