"""The one checkpoint writer and reader (docs/training.md, "Checkpoints").

A training checkpoint is a ``torch.save`` of a plain dict (tensors, dicts, lists, str, numbers,
bools, None) so that it loads with ``torch.load(path, weights_only=True)``, which never runs code.
Keys: ``format`` = ``"igfiqa.checkpoint"``, ``format_version`` = 1, ``model_spec``, ``model``, ``head``,
``optimizer``, ``scheduler``, ``scaler``, ``epoch``, ``step``, ``guidance``, ``augment``, ``sampler``,
``rng``, ``config``, ``class_names``, ``igfiqa_version`` (plus ``world_size``, ``head_sharding``,
``nonfinite``).

:func:`load_checkpoint` is the one reader, for resuming and for scoring alike: the file through
:func:`read_torch_file` (``weights_only``, every failure a :class:`CheckpointError` naming it), the
payload through :func:`check_checkpoint_payload` (the format, ``format_version`` from 1 to
:data:`FORMAT_VERSION`, every key of :data:`REQUIRED_KEYS`). ``igfiqa.load_model``, which opens a
file once for every model kind, applies the same check to the payload it read.

Files are written atomically: a temporary file in the target folder, ``fsync``, ``os.replace``, then
``fsync`` of the folder, so a crash or preemption leaves either the old or the new file, never half of one.
A write that fails (a full disk, a read-only folder) raises :class:`igfiqa.errors.OutputError` naming
the file and the cause; the temporary file is removed and the previous checkpoint stays as it was.
"""

from __future__ import annotations

import os
import pickle
import random
import re
import shutil
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch

from igfiqa.errors import CheckpointError, OutputError
from igfiqa.files import atomic_write, writing

FORMAT = "igfiqa.checkpoint"
FORMAT_VERSION = 1
REQUIRED_KEYS = (
    "format",
    "format_version",
    "model_spec",
    "model",
    "head",
    "optimizer",
    "scheduler",
    "scaler",
    "epoch",
    "step",
    "guidance",
    "augment",
    "sampler",
    "rng",
    "config",
    "class_names",
    "igfiqa_version",
)
_STEP_FILE = re.compile(r"^step_(\d{8,})\.pt$")


def _tensor_bytes(obj: Any) -> int:
    """Bytes of the tensors in a nested dict/list (about the size of its ``torch.save`` file)."""
    if isinstance(obj, torch.Tensor):
        return obj.numel() * obj.element_size()
    if isinstance(obj, dict):
        return sum(_tensor_bytes(v) for v in obj.values())
    if isinstance(obj, (list, tuple)):
        return sum(_tensor_bytes(v) for v in obj)
    return 0


def _save_failed(path: Path, error: RuntimeError, obj: Any) -> OutputError:
    """torch.save reports a failed write (a full disk: ``unexpected pos 765248 vs 765144``) as a
    RuntimeError: say what it means, with the free space of the disk."""
    reason = str(error).strip().splitlines()[-1] if str(error).strip() else type(error).__name__
    try:
        free = shutil.disk_usage(path.parent).free
    except OSError:
        return OutputError(
            f"{path}: cannot write the checkpoint ({reason}); check the disk and the folder"
        )
    need = _tensor_bytes(obj)
    if free < need + (64 << 20):  # short of the file plus a margin: the disk filled up
        cause = f"the disk is full: {free:,} bytes free, the checkpoint needs about {need:,}"
    else:
        cause = f"{reason}; {free:,} bytes are free on its disk"
    return OutputError(
        f"{path}: cannot write the checkpoint ({cause}); free some space or write elsewhere "
        "(the previous checkpoint is unchanged)"
    )


def atomic_torch_save(obj: Any, path: str | os.PathLike[str]) -> Path:
    """``torch.save(obj)`` to ``path`` atomically (:func:`igfiqa.files.atomic_write`). A failed
    write raises :class:`OutputError` naming ``path`` and the cause (a full disk with its free
    bytes); nothing of it is left behind and an earlier file at ``path`` is untouched."""
    path = Path(path)
    try:
        return atomic_write(path, lambda handle: torch.save(obj, handle))
    except RuntimeError as error:  # torch's stream writer turns a failed write into this
        raise _save_failed(path, error, obj) from error


# ----------------------------------------------------------------------------------------- RNG state
def capture_rng_state() -> dict[str, Any]:
    """Python, numpy, torch CPU (and CUDA) generator states as tensors/lists (``weights_only``-safe)."""
    py_version, py_state, py_gauss = random.getstate()
    np_kind, np_keys, np_pos, np_has_gauss, np_gauss = np.random.get_state()
    state: dict[str, Any] = {
        "python": {"version": py_version, "state": list(py_state), "gauss": py_gauss},
        "numpy": {
            "kind": str(np_kind),
            "keys": torch.from_numpy(np.asarray(np_keys, dtype=np.int64)),
            "pos": int(np_pos),
            "has_gauss": int(np_has_gauss),
            "gauss": float(np_gauss),
        },
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng_state(state: dict[str, Any]) -> None:
    """Inverse of :func:`capture_rng_state`."""
    py = state["python"]
    random.setstate((int(py["version"]), tuple(int(x) for x in py["state"]), py["gauss"]))
    npst = state["numpy"]
    np.random.set_state(
        (
            npst["kind"],
            npst["keys"].numpy().astype(np.uint32),
            int(npst["pos"]),
            int(npst["has_gauss"]),
            float(npst["gauss"]),
        )
    )
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        cuda_states = state["cuda"]
        if len(cuda_states) == torch.cuda.device_count():
            torch.cuda.set_rng_state_all(cuda_states)


# ------------------------------------------------------------------------------------------ reading
CHECKPOINT_EXPECTED = (
    "expected an igfiqa training checkpoint (a step_*.pt file written by training)"
)


def read_torch_file(
    path: str | os.PathLike[str],
    *,
    map_location: str | torch.device = "cpu",
    expected: str = CHECKPOINT_EXPECTED,
) -> Any:
    """``torch.load(path, weights_only=True)``, which never runs code, with every failure turned
    into a :class:`CheckpointError` naming ``path`` and ending with ``expected`` (what the caller
    wanted the file to be). A pickle that asks for anything but tensors and plain containers is
    refused as such."""
    path = Path(path)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            return torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as error:
        text = str(error)
        if "weights_only" in text.lower() or "unsupported global" in text.lower():
            first = next((line for line in text.splitlines() if "GLOBAL" in line), text[:200])
            raise CheckpointError(
                f"refused to load {path}: its pickle asks for an object outside tensors and plain "
                f"containers ({first.strip()}), which could run code. Only load files you trust; "
                f"igfiqa never unpickles arbitrary objects. {expected}"
            ) from error
        raise CheckpointError(
            f"{path} is not a readable PyTorch file ({error}); {expected}"
        ) from error
    except Exception as error:  # corrupt files raise anything from EOFError to IndexError
        raise CheckpointError(
            f"{path} could not be read as a PyTorch file (corrupt or truncated?): "
            f"{str(error).splitlines()[0] if str(error) else type(error).__name__}; {expected}"
        ) from error


def load_checkpoint(
    path: str | os.PathLike[str], *, map_location: str | torch.device = "cpu"
) -> dict[str, Any]:
    """The one checkpoint reader: :func:`read_torch_file`, then :func:`check_checkpoint_payload`;
    anything else raises :class:`CheckpointError` naming the file."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist (or is not a file)")
    payload = read_torch_file(path, map_location=map_location)
    check_checkpoint_payload(payload, where=str(path))
    return payload


def check_checkpoint_payload(payload: Any, *, where: str) -> None:
    """The one rule for a training checkpoint's content, for resuming and for scoring alike: the
    igfiqa format, a ``format_version`` from 1 to :data:`FORMAT_VERSION`, every key of
    :data:`REQUIRED_KEYS`. ``where`` names the file in the error."""
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise CheckpointError(
            f"{where} is not an igfiqa training checkpoint (no 'format': '{FORMAT}' key); "
            "other model files load with igfiqa.load_model, which recognises their kind"
        )
    version = payload.get("format_version")
    if (
        not isinstance(version, int)
        or isinstance(version, bool)
        or not 1 <= version <= FORMAT_VERSION
    ):
        raise CheckpointError(
            f"{where}: checkpoint format_version {version!r} is not supported (this igfiqa reads "
            f"1 to {FORMAT_VERSION}); upgrade igfiqa"
        )
    missing = [key for key in REQUIRED_KEYS if key not in payload]
    if missing:
        raise CheckpointError(
            f"checkpoint {where} is incomplete: missing keys {missing} (igfiqa writes all of "
            f"{list(REQUIRED_KEYS)}; the file was edited or written by something else). To share "
            "weights alone, use `igfiqa export`"
        )


# ---------------------------------------------------------------------------- run-folder checkpoints
def checkpoint_path(folder: str | os.PathLike[str], step: int) -> Path:
    return Path(folder) / f"step_{step:08d}.pt"


def list_checkpoints(folder: str | os.PathLike[str]) -> list[tuple[int, Path]]:
    """``(step, path)`` of the ``step_XXXXXXXX.pt`` files in ``folder``, oldest first."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    found = []
    for entry in folder.iterdir():
        match = _STEP_FILE.match(entry.name)
        if match and entry.is_file():
            found.append((int(match.group(1)), entry))
    return sorted(found)


def latest_checkpoint(folder: str | os.PathLike[str]) -> Path | None:
    found = list_checkpoints(folder)
    return found[-1][1] if found else None


def save_checkpoint(
    payload: dict[str, Any], folder: str | os.PathLike[str], *, keep: int = 0
) -> Path:
    """Write ``payload`` as ``folder/step_<step>.pt`` atomically; keep only the newest ``keep`` (0 = all)."""
    missing = [key for key in REQUIRED_KEYS if key not in payload]
    if missing:
        raise ValueError(f"checkpoint payload lacks keys {missing}")
    path = atomic_torch_save(payload, checkpoint_path(folder, int(payload["step"])))
    if keep > 0:
        for _, old in list_checkpoints(folder)[:-keep]:
            with writing(old, "remove the old checkpoint"):
                old.unlink(missing_ok=True)
    return path
