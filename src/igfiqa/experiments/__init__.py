"""The experiment engine: train IG-FIQA and CR-FIQA variants on the same data with the same seeds,
score them through the evaluation path and compare them with paired statistics.

- :mod:`.variants`: :class:`Variant` (a recipe's IG-FIQA or CR-FIQA preset plus overrides) and the
  demo's and the study's catalogues.
- :mod:`.settings`: :class:`Settings`, the one settings type (validation, records, the one list of
  ``--set`` overrides of a unit), with the demo and study presets.
- :mod:`.data`: what a seed trains on and is evaluated on (rendered synthetic faces and their
  held-out identities, or the user's training set and benchmarks).
- :mod:`.unit`: one unit of work: train a variant for a seed, then score every benchmark.
- :mod:`.evaluate`: a seed's evaluation with every FR model, and its ordinary evaluation report.
- :mod:`.stats`: ``mean_ci`` and paired differences; :mod:`.report`: numbers, tables, plots.
- :mod:`.folders`: the output folder's lock, run folders cleared safely, the settings record.
- :mod:`.run`: the engine; :mod:`.demo` and :mod:`.study`: its two presets (``igfiqa demo``,
  ``igfiqa study``); :mod:`.plan`: ``igfiqa study --plan``; :mod:`.instruments`: the study's
  per-epoch instruments and real-photo transfer.
"""

from __future__ import annotations

from igfiqa.experiments.demo import DemoResult, run_demo
from igfiqa.experiments.settings import Settings, demo_settings, study_settings
from igfiqa.experiments.study import run_study
from igfiqa.experiments.unit import ExperimentStopped
from igfiqa.experiments.variants import Variant

__all__ = [
    "DemoResult",
    "ExperimentStopped",
    "Settings",
    "Variant",
    "demo_settings",
    "run_demo",
    "run_study",
    "study_settings",
]
