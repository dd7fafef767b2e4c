"""igfiqa: train, run and evaluate face image quality assessment models with IG-FIQA and CR-FIQA.

The public API is re-exported here lazily, so that ``import igfiqa`` stays cheap and has no side
effects: each name is imported from its module on first access. Type checkers and IDEs read the
same names, with their real types, from the ``TYPE_CHECKING`` block below.

What the ``list_*`` functions name:

- :func:`list_models`: the backbone architectures igfiqa builds and trains (``create_model``,
  ``model.name`` in a config): ``iresnet18`` ... ``iresnet200`` (aliases ``r18`` ... ``r200``).
- :func:`list_model_kinds`: the released model formats ``load_model`` reads (``igfiqa``,
  ``crfiqa``, ``magface``, ..., ``onnx``, ``torchscript``; ``igfiqa models`` describes each).
- :func:`list_quality_methods`: the quality methods ``evaluate`` takes by name (``random``, ...).
- :func:`list_benchmark_kinds`: the benchmark formats ``open_benchmark`` reads (``bin``, ...).
- :func:`list_detectors`: the face detectors (``mtcnn``).
- :func:`list_training_formats`: the training-data formats ``open_training_dataset`` reads.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

if TYPE_CHECKING:  # the real names for type checkers; at run time __getattr__ imports them
    from igfiqa.config import load_config as load_config
    from igfiqa.data.align import align_face as align_face
    from igfiqa.data.benchmarks import list_benchmark_kinds as list_benchmark_kinds
    from igfiqa.data.benchmarks import open_benchmark as open_benchmark
    from igfiqa.data.datasets import list_training_formats as list_training_formats
    from igfiqa.data.datasets import open_training_dataset as open_training_dataset
    from igfiqa.data.decode import decode_image as decode_image
    from igfiqa.data.synthetic import SyntheticFaces as SyntheticFaces
    from igfiqa.detection import list_detectors as list_detectors
    from igfiqa.engine.trainer import train as train
    from igfiqa.errors import IgfiqaError as IgfiqaError
    from igfiqa.evaluation.api import EvaluationResults as EvaluationResults
    from igfiqa.evaluation.api import evaluate as evaluate
    from igfiqa.evaluation.quality import list_quality_methods as list_quality_methods
    from igfiqa.evaluation.report import write_report as write_report
    from igfiqa.evaluation.results import BenchmarkResult as BenchmarkResult
    from igfiqa.evaluation.results import evaluate_scores as evaluate_scores
    from igfiqa.inference.kinds import list_model_kinds as list_model_kinds
    from igfiqa.inference.model import QualityModel as QualityModel
    from igfiqa.inference.model import load_model as load_model
    from igfiqa.method.augment import QualityAugmentation as QualityAugmentation
    from igfiqa.method.guidance import IntraClassGuidance as IntraClassGuidance
    from igfiqa.method.objective import compute_objective as compute_objective
    from igfiqa.models import create_model as create_model
    from igfiqa.models import list_models as list_models
    from igfiqa.models.heads import MarginHead as MarginHead

# name -> module that defines it; resolved on first access (tests/test_public_api.py checks that
# this, __all__ and the TYPE_CHECKING block name the same things).
_LAZY = {
    "BenchmarkResult": "igfiqa.evaluation.results",
    "EvaluationResults": "igfiqa.evaluation.api",
    "IgfiqaError": "igfiqa.errors",
    "IntraClassGuidance": "igfiqa.method.guidance",
    "MarginHead": "igfiqa.models.heads",
    "QualityAugmentation": "igfiqa.method.augment",
    "QualityModel": "igfiqa.inference.model",
    "SyntheticFaces": "igfiqa.data.synthetic",
    "align_face": "igfiqa.data.align",
    "compute_objective": "igfiqa.method.objective",
    "create_model": "igfiqa.models",
    "decode_image": "igfiqa.data.decode",
    "evaluate": "igfiqa.evaluation.api",
    "evaluate_scores": "igfiqa.evaluation.results",
    "list_benchmark_kinds": "igfiqa.data.benchmarks",
    "list_detectors": "igfiqa.detection",
    "list_model_kinds": "igfiqa.inference.kinds",
    "list_models": "igfiqa.models",
    "list_quality_methods": "igfiqa.evaluation.quality",
    "list_training_formats": "igfiqa.data.datasets",
    "load_config": "igfiqa.config",
    "load_model": "igfiqa.inference.model",
    "open_benchmark": "igfiqa.data.benchmarks",
    "open_training_dataset": "igfiqa.data.datasets",
    "train": "igfiqa.engine.trainer",
    "write_report": "igfiqa.evaluation.report",
}

__all__ = [
    "BenchmarkResult",
    "EvaluationResults",
    "IgfiqaError",
    "IntraClassGuidance",
    "MarginHead",
    "QualityAugmentation",
    "QualityModel",
    "SyntheticFaces",
    "__version__",
    "align_face",
    "compute_objective",
    "create_model",
    "decode_image",
    "evaluate",
    "evaluate_scores",
    "list_benchmark_kinds",
    "list_detectors",
    "list_model_kinds",
    "list_models",
    "list_quality_methods",
    "list_training_formats",
    "load_config",
    "load_model",
    "open_benchmark",
    "open_training_dataset",
    "train",
    "write_report",
]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'igfiqa' has no attribute {name!r}")
    return getattr(import_module(module), name)


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
