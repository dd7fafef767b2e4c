"""The registry of model kinds: one module per released format (docs/models.md).

``load_kind(path, kind=None, sha256=None, options=None)`` opens any supported file; the kind is
recognised from the file's keys and structure where that is unambiguous, else named. Modules are
imported here in the order ``igfiqa models`` lists them.
"""

from __future__ import annotations

from igfiqa.inference.kinds import (  # noqa: F401  (each module registers its kind)
    arcface,
    crfiqa,
    curricularface,
    diffiqa_r,
    ediffiqa,
    igfiqa,
    magface,
    ofiq_uqs,
    onnx,
    sddfiqa,
    serfiq,
    torchscript,
)
from igfiqa.inference.kinds.base import (
    KINDS,
    LoadedModel,
    ModelFile,
    ModelKind,
    detect_kind,
    get_kind,
    list_kinds,
    list_model_kinds,
    load_kind,
    open_model_file,
    register_kind,
)

__all__ = [
    "KINDS",
    "LoadedModel",
    "ModelFile",
    "ModelKind",
    "detect_kind",
    "get_kind",
    "list_kinds",
    "list_model_kinds",
    "load_kind",
    "open_model_file",
    "register_kind",
]
