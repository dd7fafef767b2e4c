"""Bounds of training on this machine: data loader workers, the model's size and a batch's
activations, checked from the config before any work."""

from __future__ import annotations

import functools
from typing import Any

from igfiqa.config import IgfiqaConfig
from igfiqa.engine.distributed import launch_env
from igfiqa.errors import ConfigError
from igfiqa.machine import available_cores, machine_memory

WORKERS_PER_CORE = 4
"""data.num_workers may be at most this many per CPU core available to the process."""
TRAINING_COPIES = 3
"""Copies of every parameter that training holds: the weights, their gradients, SGD momentum."""


def _gib(nbytes: float) -> str:
    if nbytes < 2**30:
        return f"{nbytes / 2**20:,.1f} MiB"
    return f"{nbytes / 2**30:,.1f} GiB"


@functools.lru_cache(maxsize=16)
def model_footprint(spec: tuple[tuple[str, Any], ...]) -> tuple[int, int]:
    """(parameters, activation values of one image's forward pass) of the model ``spec`` (the
    items of :meth:`ModelConfig.spec`), counted on PyTorch's meta device: nothing is allocated.
    The activations are the outputs of every leaf module (what training keeps for backward)."""
    import torch

    from igfiqa.models import create_model

    with torch.device("meta"):
        model = create_model(**dict(spec))
    parameters = sum(p.numel() for p in model.parameters())
    size = int(dict(spec).get("input_size", 112))
    values = [0]

    def count(module: Any, inputs: Any, output: Any) -> None:
        if isinstance(output, torch.Tensor):
            values[0] += output.numel()

    for module in model.modules():
        if not next(module.children(), None):
            module.register_forward_hook(count)
    model.eval()
    with torch.no_grad():
        model(torch.empty(1, 3, size, size, device="meta"))
    return parameters, values[0]


def _device_memory(device: str) -> tuple[str, int | None]:
    """(a description, bytes) of the memory that the training device ``device`` has."""
    import torch

    ram = machine_memory()
    if device == "cpu" or not torch.cuda.is_available():
        return "this machine's memory", ram
    try:
        index = torch.device(device).index if device.startswith("cuda:") else None
        index = launch_env().local_rank if index is None else index
        return f"GPU {index}'s memory", int(torch.cuda.get_device_properties(index).total_memory)
    except (RuntimeError, AssertionError, ValueError):  # an unknown GPU: resolve_device says so
        return "this machine's memory", None


def check_resources(config: IgfiqaConfig) -> None:
    """Refuse, with a :class:`ConfigError` naming the field, settings that cannot fit this
    machine: more data loader workers than :data:`WORKERS_PER_CORE` per available CPU core,
    a model whose weights, gradients and momentum exceed the memory, a batch whose
    activations alone exceed the training device's memory. Call it before any work."""
    cores = available_cores()
    most = WORKERS_PER_CORE * cores
    if config.data.num_workers > most:
        raise ConfigError(
            f"data.num_workers: {config.data.num_workers} is more than this machine can run: at "
            f"most {most} ({WORKERS_PER_CORE} per CPU core, {cores} available); fix it with "
            f"--set data.num_workers=N (0 to {most}; about one per core is plenty)"
        )
    model = config.model
    sizes = (
        f"model.width={model.width:g}, model.num_features={model.num_features}, "
        f"model.input_size={model.input_size}"
    )
    try:
        parameters, activations = model_footprint(tuple(model.spec().items()))
    except (RuntimeError, ValueError, OverflowError, MemoryError) as error:
        raise ConfigError(
            f"model: {model.name} with {sizes} is too large to build ({error}); lower model.width, "
            "model.num_features or model.input_size"
        ) from None
    ram = machine_memory()
    state = TRAINING_COPIES * 4 * parameters
    if ram is not None and state > ram:
        raise ConfigError(
            f"model: {model.name} with {sizes} has {parameters:,} parameters; their weights, "
            f"gradients and momentum need {_gib(state)}, more than this machine's memory "
            f"({_gib(ram)}); lower model.width, model.num_features or model.input_size"
        )
    where, memory = _device_memory(config.train.device)
    if memory is None:
        return
    if where == "this machine's memory":
        memory -= state
    per_value = 4 if config.train.amp == "none" else 2
    batch = config.data.batch_size
    need = batch * activations * per_value
    if need > memory:
        raise ConfigError(
            f"data.batch_size: {batch} images of {model.input_size}x{model.input_size} need about "
            f"{_gib(need)} of activations in one training step ({_gib(activations * per_value)} "
            f"each for {model.name} at model.width={model.width:g}), more than {where} "
            f"({_gib(max(memory, 0))} free of it); lower data.batch_size (or model.input_size)"
        )
    batch = config.verification.batch_size
    need = batch * 3 * model.input_size**2 * 4 * 2  # each image and its mirror image
    if need > memory:
        raise ConfigError(
            f"verification.batch_size: {batch} images of {model.input_size}x{model.input_size} "
            f"need {_gib(need)}, more than {where}; lower verification.batch_size"
        )


__all__ = ["TRAINING_COPIES", "WORKERS_PER_CORE", "check_resources", "model_footprint"]
