"""Backends that run the network on a prepared float32 batch: PyTorch and onnxruntime.

Both take a numpy float32 (B, 3, S, S) batch in [-1, 1] and return numpy float32 ``(embedding (B, F),
quality (B,) or None)``. The onnxruntime runner never imports torch.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from igfiqa.errors import CheckpointError, ConfigError

_DTYPES = {
    "float32": "float32",
    "fp32": "float32",
    "float": "float32",
    "bfloat16": "bfloat16",
    "bf16": "bfloat16",
    "float16": "float16",
    "fp16": "float16",
    "half": "float16",
}


def dtype_name(dtype: Any) -> str:
    """Normalise a dtype given as None, a string (fp32/bf16/fp16/...) or a torch dtype."""
    if dtype is None:
        return "float32"
    text = str(dtype).removeprefix("torch.").lower()
    if text not in _DTYPES:
        raise ConfigError(
            f"unsupported dtype {dtype!r}: use float32 (fp32), bfloat16 (bf16) or float16"
        )
    return _DTYPES[text]


def check_threads(threads: int | None, option: str = "--threads") -> int | None:
    """``threads`` for the network if it is in [1, CPU cores available] (None or 0: the default, all
    of them); ConfigError naming ``option`` otherwise (more threads than cores only wait for one
    another: 256 threads on 2 cores ran 115 times slower than 2)."""
    if not threads:
        return None
    from igfiqa.machine import available_cores

    threads = int(threads)
    cores = available_cores()
    if not 1 <= threads <= cores:
        raise ConfigError(
            f"{option} {threads} is out of range: this process may run on {cores} CPU "
            f"core{'s' if cores != 1 else ''}, so use 1 to {cores} (leave it out for all of them)"
        )
    return threads


def resolve_device(device: Any) -> str:
    """``auto`` -> ``cuda`` when torch sees a GPU, else ``cpu``; any other device as given."""
    if str(device) != "auto":
        return str(device)
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


class TorchRunner:
    """Runs a scoring network (``embed_and_quality``) on ``device`` in ``dtype`` under
    ``torch.inference_mode``.

    With ``fuse`` (default) it runs a copy whose BatchNorms are folded into the neighbouring layers
    (:func:`igfiqa.inference.fusion.fold_batch_norms`); ``network`` is the unfused module, on the
    same device and dtype. With ``channels_last`` (default) the convolutions run on NHWC tensors,
    the layout oneDNN and cuDNN are fastest with; ``compile`` wraps the forward in
    ``torch.compile`` (worth its start-up time only for long jobs).
    """

    backend = "torch"

    def __init__(
        self,
        network: Any,
        *,
        device: Any = "cpu",
        dtype: Any = None,
        fuse: bool = True,
        channels_last: bool = True,
        compile: bool = False,
    ) -> None:
        import torch

        device = resolve_device(device)
        try:
            self.device = torch.device(device)
        except RuntimeError as error:
            raise ConfigError(f"invalid device {device!r}: {error}") from error
        if self.device.type == "cuda" and not torch.cuda.is_available():
            raise ConfigError(f"device {device!r} requested but CUDA is not available here")
        self.dtype = dtype_name(dtype)
        self._torch_dtype = getattr(torch, self.dtype)
        forward = network
        if fuse:  # BatchNorms folded into the convolutions: same function, fewer memory passes
            from igfiqa.inference.fusion import fold_batch_norms

            forward = fold_batch_norms(network)  # a float32 copy, folded before any cast
        self.network = network.eval().to(device=self.device, dtype=self._torch_dtype)
        self._forward_network = forward.eval().to(device=self.device, dtype=self._torch_dtype)
        self.channels_last = bool(channels_last)
        if self.channels_last:
            self._forward_network = self._forward_network.to(memory_format=torch.channels_last)
        self._forward = self._forward_network.embed_and_quality
        if compile:
            self._forward = torch.compile(self._forward_network.embed_and_quality, dynamic=True)
        self.has_quality_head = bool(getattr(network, "has_quality_head", False))
        self.num_features = int(network.num_features)
        self.input_size = int(network.input_size)

    def __call__(self, batch: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        import torch

        with torch.inference_mode():
            x = torch.from_numpy(np.ascontiguousarray(batch, dtype=np.float32))
            x = x.to(device=self.device, dtype=self._torch_dtype, non_blocking=True)
            if self.channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            embedding, quality = self._forward(x)
            embedding_np = embedding.float().cpu().numpy()
            quality_np = None if quality is None else quality.float().cpu().numpy()
        return embedding_np, quality_np


class OnnxRunner:
    """Runs an exported ``model.onnx`` with onnxruntime (CPU, or CUDA when ``device`` is cuda).

    ``names="igfiqa"`` expects igfiqa's input ``image`` and outputs ``embedding`` [, ``quality``];
    ``names="first"`` takes any model's first input and first output (an embedding-only FR model).
    """

    backend = "onnx"
    dtype = "float32"

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        device: str = "cpu",
        threads: int | None = None,
        names: str = "igfiqa",
    ) -> None:
        try:
            import onnxruntime as ort
        except ImportError as error:
            raise ConfigError(
                "the onnx backend needs onnxruntime: pip install 'igfiqa[onnx]'"
            ) from error
        from igfiqa.machine import available_cores

        threads = check_threads(threads)
        self.path = Path(path)
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.intra_op_num_threads = threads or available_cores()
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        providers = ["CPUExecutionProvider"]
        if str(device) == "auto":
            cuda = "CUDAExecutionProvider" in ort.get_available_providers()
            device = "cuda" if cuda else "cpu"
        if str(device).startswith("cuda"):
            if "CUDAExecutionProvider" not in ort.get_available_providers():
                raise ConfigError("device cuda requested but onnxruntime has no CUDA provider here")
            providers.insert(0, "CUDAExecutionProvider")
        self.device = str(device)
        try:
            self.session = ort.InferenceSession(str(self.path), options, providers=providers)
        except Exception as error:  # onnxruntime raises its own exception types
            raise CheckpointError(f"{self.path} is not a loadable ONNX model: {error}") from error
        inputs = self.session.get_inputs()
        outputs = [output.name for output in self.session.get_outputs()]
        self._input = "image"
        if names == "first":  # any FR model: its first input, its first output is the embedding
            self._input = inputs[0].name
            self.has_quality_head = False
            self._outputs = [outputs[0]]
            shape = inputs[0].shape
            side = shape[-1] if len(shape) == 4 else None
            self.input_size = int(side) if isinstance(side, int) else None
            self.num_features = None
            self.one_at_a_time = bool(shape) and shape[0] == 1  # a static batch of one (OFIQ)
            return
        if [i.name for i in inputs] != ["image"] or "embedding" not in outputs:
            raise CheckpointError(
                f"{self.path}: expected input 'image' and outputs 'embedding' [, 'quality'], got "
                f"inputs {[i.name for i in inputs]} and outputs {outputs}"
            )
        self.has_quality_head = "quality" in outputs
        self.one_at_a_time = False
        self._outputs = ["embedding", "quality"] if self.has_quality_head else ["embedding"]
        shape = inputs[0].shape
        self.input_size = int(shape[-1]) if isinstance(shape[-1], int) else None
        self.num_features = None

    def __call__(self, batch: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        if self.one_at_a_time and len(batch) != 1:
            parts = [self(batch[i : i + 1]) for i in range(len(batch))]
            embedding = np.concatenate([part[0] for part in parts])
            quality = None if parts[0][1] is None else np.concatenate([part[1] for part in parts])
            return embedding, quality
        result = self.session.run(
            self._outputs, {self._input: np.ascontiguousarray(batch, np.float32)}
        )
        quality = result[1][:, 0] if self.has_quality_head else None
        return result[0], quality


class AdaptedRunner:
    """A runner behind igfiqa's standard input for a model that needs another convention (an
    :class:`~igfiqa.models.convention.InputConvention`, applied in numpy) and whose quality is a
    function of its embedding (``quality``: embeddings (B, F) -> (B,), or None for an FR model)."""

    def __init__(
        self,
        inner: Any,
        *,
        convention: Any,
        quality: Any = None,
        num_features: int | None = None,
    ) -> None:
        self.inner = inner
        self.convention = convention
        self.quality = quality
        self.backend = inner.backend
        self.device = inner.device
        self.dtype = inner.dtype
        self.has_quality_head = quality is not None
        self.input_size = int(convention.size)
        self.num_features = num_features

    def __call__(self, batch: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        prepared = (
            batch if self.convention.is_standard else self.convention.from_standard_numpy(batch)
        )
        embedding, _ = self.inner(prepared)
        embedding = np.asarray(embedding, dtype=np.float32).reshape(len(batch), -1)
        quality = None if self.quality is None else np.asarray(self.quality(embedding), np.float32)
        return embedding, quality


__all__ = [
    "AdaptedRunner",
    "OnnxRunner",
    "TorchRunner",
    "check_threads",
    "dtype_name",
    "resolve_device",
]
