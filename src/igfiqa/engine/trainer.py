"""The training loop: one process on a CPU or GPU, or one process per GPU under ``torchrun``.

``train(config, out_dir=...)`` builds the data, backbone, margin head (replicated or sharded),
guidance and augmentation from an :class:`igfiqa.config.IgfiqaConfig`, then runs SGD steps of
:func:`igfiqa.method.objective.compute_objective` with the recipe's schedule, gradient clipping and
AMP. It logs JSON Lines (``metrics.jsonl``), shows a progress bar (or, where none is shown, writes
text lines on standard error: :mod:`igfiqa.engine.textlog`), writes atomic checkpoints on a
cadence and when SIGTERM/SIGINT arrives (after finishing the current step), runs the periodic
verification and returns a :class:`TrainResult`. ``resume=True`` continues the newest checkpoint of
``out_dir`` exactly (weights, optimizer, schedule, scaler, guidance, augmentation RNG, sampler
position, RNG states).

Distributed: with ``WORLD_SIZE > 1`` the process group is initialised from the environment
(``env://``), the backbone is wrapped in DistributedDataParallel, every rank reads its slice of each
global batch, the guidance state is updated with the gathered (label, CCS) pairs of all ranks
(identical everywhere), and only rank 0 writes files and logs.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import signal
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from torch import nn
from torch.utils.data import DataLoader

from igfiqa import __version__
from igfiqa.checkpoint import (
    FORMAT,
    FORMAT_VERSION,
    capture_rng_state,
    latest_checkpoint,
    load_checkpoint,
    restore_rng_state,
    save_checkpoint,
)
from igfiqa.config import IgfiqaConfig, config_from_dict
from igfiqa.engine import distributed
from igfiqa.engine.resources import check_resources
from igfiqa.engine.sampler import FlippedDataset, ResumableDistributedSampler
from igfiqa.engine.schedules import LRSchedule
from igfiqa.engine.textlog import TrainingLog
from igfiqa.errors import CheckpointError, ConfigError, IgfiqaError
from igfiqa.files import (
    LOCK_FILE,
    FolderLock,
    atomic_write_text,
    ensure_dir,
    json_safe,
    remove_stale_temp_files,
    writing,
)
from igfiqa.models import create_model
from igfiqa.models.heads import MarginHead
from igfiqa.models.sharded import ShardedMarginHead
from igfiqa.progress import ProgressBar

CONFIG_FILE = "config.yaml"
METRICS_FILE = "metrics.jsonl"
CHECKPOINT_DIR = "checkpoints"


class NonFiniteLossError(IgfiqaError):
    """The run diverged: too many optimizer steps in a row had a non-finite loss or gradient, or
    the weights themselves became non-finite (NaN or infinity). No checkpoint of such weights is
    written; the last one written stays the newest."""


@dataclass
class TrainResult:
    """What a finished (or stopped) run produced."""

    run_dir: Path
    checkpoint: Path | None
    step: int
    epoch: int
    stopped: str  # "completed", "max_steps" or "signal"
    metrics: dict[str, float] = field(default_factory=dict)
    signum: int | None = None  # the signal that stopped it (SIGTERM 15, SIGINT 2)
    verification: dict[str, dict[str, float]] = field(default_factory=dict)
    nonfinite_steps: int = 0
    images_per_second: float = 0.0


# ------------------------------------------------------------------------------------------ helpers
def unwrap(model: nn.Module) -> nn.Module:
    """The plain module inside DDP / torch.compile wrappers."""
    inner = getattr(model, "module", model)
    return getattr(inner, "_orig_mod", inner)


class _StopFlag:
    """Set by SIGTERM/SIGINT; the loop finishes the current step, saves and exits."""

    def __init__(self) -> None:
        self.signum: int | None = None
        self._previous: dict[int, Any] = {}

    def install(self) -> None:
        if threading.current_thread() is not threading.main_thread():
            return
        for signum in (signal.SIGTERM, signal.SIGINT):
            previous = signal.getsignal(signum)
            if previous is signal.SIG_IGN:  # e.g. `igfiqa train &` in a script: not ours to take
                continue
            self._previous[signum] = previous
            signal.signal(signum, self._handle)

    def _handle(self, signum: int, frame: Any) -> None:
        if self.signum is not None and signum == signal.SIGINT:
            raise KeyboardInterrupt  # second Ctrl-C: stop now
        self.signum = signum

    def restore(self) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, signal.SIG_DFL if handler is None else handler)
        self._previous.clear()


def truncate_metrics(path: Path, step: int) -> int:
    """Drop the records after ``step`` (and any torn last line) from a run's ``metrics.jsonl``.

    A run killed after its last checkpoint logged steps that its resumption repeats; without this
    they would appear twice. Returns the number of lines dropped; the file is rewritten atomically.
    """
    if not path.is_file():
        return 0
    kept, dropped = [], 0
    with writing(path, "read"):
        text = path.read_text(encoding="utf-8", errors="replace")
    for line in text.splitlines():
        try:
            record = json.loads(line)
            keep = isinstance(record, dict) and int(record.get("step", 0)) <= step
        except (ValueError, TypeError):
            keep = False
        if keep:
            kept.append(line)
        else:
            dropped += 1
    if dropped:
        atomic_write_text("".join(f"{line}\n" for line in kept), path)
    return dropped


class _MetricsLog:
    """JSON Lines file (+ optional TensorBoard) written by rank 0 only."""

    def __init__(self, run_dir: Path | None, tensorboard: bool) -> None:
        self.handle = None
        self.writer = None
        if run_dir is None:
            return
        self.path = run_dir / METRICS_FILE
        with writing(self.path, "open for appending"):
            self.handle = open(self.path, "a", encoding="utf-8")  # noqa: SIM115
        if tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError as error:
                raise ConfigError(
                    "logging.tensorboard is on but TensorBoard is not installed: "
                    "pip install 'igfiqa[tensorboard]' or --set logging.tensorboard=false"
                ) from error
            with writing(run_dir / "tensorboard"):
                self.writer = SummaryWriter(log_dir=str(run_dir / "tensorboard"))

    def write(self, record: dict[str, Any]) -> None:
        """Append ``record`` as one line of strict JSON (infinities as "inf", NaN as null)."""
        if self.handle is None:
            return
        line = json.dumps(json_safe(record, infinite_as_text=True), sort_keys=True, allow_nan=False)
        with writing(self.path):
            self.handle.write(line + "\n")
            self.handle.flush()
        if self.writer is not None:
            step = int(record.get("step", 0))
            for key, value in record.items():
                if isinstance(value, (int, float)) and key not in ("step", "epoch"):
                    self.writer.add_scalar(f"{record.get('kind', 'train')}/{key}", value, step)

    def close(self) -> None:
        if self.handle is not None:
            handle, self.handle = self.handle, None
            with contextlib.suppress(OSError):  # every record was flushed when written
                handle.close()
        if self.writer is not None:
            self.writer.close()


def _autocast(device: torch.device, amp: str) -> contextlib.AbstractContextManager:
    if amp == "none":
        return contextlib.nullcontext()
    dtype = torch.bfloat16 if amp == "bf16" else torch.float16
    return torch.autocast(device_type=device.type, dtype=dtype)


def _gather_objects(obj: Any) -> list[Any]:
    """Every rank's ``obj`` (our own processes' state: RNG and augmentation generators)."""
    if distributed.get_world_size() == 1:
        return [obj]
    out: list[Any] = [None] * distributed.get_world_size()
    dist.all_gather_object(out, obj)
    return out


def _any_rank(flag: bool, device: torch.device) -> bool:
    """True when ``flag`` is true on any rank."""
    if distributed.get_world_size() == 1:
        return flag
    value = torch.tensor([1.0 if flag else 0.0], device=device)
    dist.all_reduce(value, op=dist.ReduceOp.MAX)
    return bool(value.item() > 0)


def open_dataset(config: IgfiqaConfig) -> Any:
    """The training dataset of ``config.data`` (flips are applied by the sampler, not here)."""
    from igfiqa.data.datasets import open_training_dataset

    size = config.data.image_size or config.model.input_size
    return open_training_dataset(config.data.source, image_size=size, hflip=False)


class _Speedometer:
    """Images per second over the current logging window (``lap``) and over the whole run."""

    def __init__(self) -> None:
        self.start = self.window_start = time.perf_counter()
        self.window_images = self.run_images = 0
        self.last = 0.0

    def add(self, images: int) -> None:
        self.window_images += images
        self.run_images += images

    def lap(self) -> float:
        now = time.perf_counter()
        self.last = self.window_images / max(now - self.window_start, 1e-9)
        self.window_images, self.window_start = 0, now
        return self.last

    def elapsed(self) -> float:
        return time.perf_counter() - self.start


# --------------------------------------------------------------------------------------- the trainer
class Trainer:
    """All state of one training run; :func:`train` is the public entry point."""

    def __init__(
        self,
        config: IgfiqaConfig,
        out_dir: str | os.PathLike[str],
        *,
        resume: bool = False,
        max_steps: int | None = None,
        progress: bool = True,
        dataset: Any = None,
    ) -> None:
        self.config = config
        self.run_dir = Path(out_dir)
        self.resume = resume
        self.max_steps = max_steps if max_steps is not None else config.train.max_steps
        self.show_progress = progress and config.logging.progress
        self.dataset = dataset
        self.info = distributed.setup(config.train.device)
        self.device = self.info.device
        self._textlog = TrainingLog(0, enabled=False, total=0, epochs=1, steps_per_epoch=1)

    # -------------------------------------------------------------------------------- building
    def build(self) -> None:
        """Everything a run needs, in an order that keeps seeded draws reproducible: determinism
        settings, data and sampler, model and margin head, optimisers and schedule, the method's
        guidance and augmentation, then resume (or refuse a folder of another run) and wrapping
        for DDP / compile."""
        self._set_determinism()
        self._build_data()
        self._build_model_and_head()
        self._build_optimisation()
        self._build_method()
        self.step = 0
        self.epoch = 0
        self.nonfinite_total = 0
        self.nonfinite_in_a_row = 0
        self.last_metrics: dict[str, float] = {}
        # Ranks draw different dropout masks from here on.
        torch.manual_seed(self.config.train.seed * 1000 + 7 + self.info.rank)
        self.resumed_from: Path | None = None
        if self.resume:
            self._load_latest()
        else:
            self._refuse_another_runs_folder()
        self._wrap_for_training()

    def _set_determinism(self) -> None:
        cfg = self.config
        if cfg.train.deterministic:
            torch.use_deterministic_algorithms(True, warn_only=False)
            torch.backends.cudnn.benchmark = False
            os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        elif self.device.type == "cuda":
            torch.backends.cudnn.benchmark = True
        torch.manual_seed(cfg.train.seed)

    def _build_data(self) -> None:
        cfg = self.config
        if self.dataset is None:
            cfg.check_paths()
            self.dataset = open_dataset(cfg)
        self.num_classes = int(self.dataset.num_classes)
        self.class_names = [str(name) for name in getattr(self.dataset, "class_names", [])]
        self.sampler = ResumableDistributedSampler(
            len(self.dataset),
            cfg.data.batch_size,
            rank=self.info.rank,
            world_size=self.info.world_size,
            seed=cfg.train.seed,
            hflip=cfg.data.hflip,
        )
        self.steps_per_epoch = self.sampler.steps_per_epoch
        self.total_steps = self.steps_per_epoch * cfg.train.epochs

    def _build_model_and_head(self) -> None:
        cfg = self.config
        # Same seed on every rank: identical initial weights (DDP also broadcasts rank 0's).
        self.model = create_model(**cfg.model.spec()).to(self.device)
        if cfg.optim.train_embedding_bn_scale:
            self.model.features.weight.requires_grad_(True)
        head_args = dict(kind=cfg.head.kind, s=cfg.head.s, m=cfg.head.m)
        if cfg.head.sharded:
            self.head: nn.Module = ShardedMarginHead(
                cfg.model.num_features,
                self.num_classes,
                embedding_grad_scale=float(self.info.world_size),
                **head_args,
            )
        else:
            self.head = MarginHead(cfg.model.num_features, self.num_classes, **head_args)
        self.head.to(self.device)
        self.sharded = cfg.head.sharded and self.info.world_size > 1
        if cfg.train.channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)

    def _build_optimisation(self) -> None:
        cfg = self.config
        global_batch = cfg.data.batch_size * self.info.world_size
        lr = cfg.optim.lr * (global_batch / cfg.optim.base_batch if cfg.optim.scale_lr else 1.0)
        if not math.isfinite(lr):
            raise ConfigError(
                f"optim.lr: {cfg.optim.lr:g} scaled to the global batch of {global_batch} is not a "
                "finite number; lower optim.lr (or --set optim.scale_lr=false)"
            )
        self.lr = lr
        sgd = dict(lr=lr, momentum=cfg.optim.momentum, weight_decay=cfg.optim.weight_decay)
        self.backbone_params = [p for p in self.model.parameters() if p.requires_grad]
        self.opt_backbone = torch.optim.SGD(self.backbone_params, **sgd)
        self.opt_head = torch.optim.SGD(self.head.parameters(), **sgd)
        self.schedule = LRSchedule(
            [self.opt_backbone, self.opt_head],
            kind=cfg.optim.schedule,
            steps_per_epoch=self.steps_per_epoch,
            total_steps=self.total_steps,
            milestones=cfg.optim.milestones,
            gamma=cfg.optim.gamma,
            power=cfg.optim.poly_power,
            warmup_steps=round(cfg.optim.warmup_epochs * self.steps_per_epoch),
        )
        scaler_device = "cuda" if self.device.type == "cuda" else "cpu"
        self.scaler = torch.amp.GradScaler(scaler_device, enabled=cfg.train.amp == "fp16")

    def _build_method(self) -> None:
        """The intra-class variance guidance and the quality-stream augmentation (IG-FIQA)."""
        cfg = self.config
        self.guidance = cfg.method.guidance.build(self.num_classes)
        if self.guidance is not None:
            self.guidance.to(self.device)
        self.augment = None
        if cfg.method.augment.enabled and cfg.method.objective.fiqa_batch != "same":
            from igfiqa.method.augment import QualityAugmentation

            # Every rank degrades its own images differently.
            self.augment = QualityAugmentation(
                cfg.method.augment, seed=cfg.train.seed * 1000 + 1 + self.info.rank
            )

    def _refuse_another_runs_folder(self) -> None:
        """A fresh run does not write into a folder holding another run's checkpoints or logs."""
        if latest_checkpoint(self.run_dir / CHECKPOINT_DIR) is not None:
            raise ConfigError(
                f"{self.run_dir} already holds checkpoints of a run: continue it with "
                f"--resume {self.run_dir} (resume=True) or choose another --out folder"
            )
        foreign = [n for n in (CONFIG_FILE, METRICS_FILE) if (self.run_dir / n).exists()]
        if foreign:
            raise ConfigError(
                f"{self.run_dir} holds another run's {' and '.join(foreign)} (and no "
                "checkpoint to resume): choose another --out folder, or delete them to start "
                "afresh there"
            )

    def _wrap_for_training(self) -> None:
        """DDP (the head is broadcast unless sharded) and ``torch.compile`` where configured."""
        self._float_buffers = [
            b for b in [*self.model.buffers(), *self.head.buffers()] if b.is_floating_point()
        ]
        self.train_model: nn.Module = self.model
        if self.info.distributed:
            from torch.nn.parallel import DistributedDataParallel

            device_ids = [self.device.index] if self.device.type == "cuda" else None
            # No buffer broadcast at each forward (as insightface / CR-FIQA train): IG-FIQA runs the
            # model twice before one backward, and a broadcast in the second forward would
            # overwrite tensors the first one saved for backward (each rank keeps its own BN
            # statistics; checkpoints come from rank 0).
            self.train_model = DistributedDataParallel(
                self.model, device_ids=device_ids, broadcast_buffers=False
            )
            if not self.sharded:
                distributed.broadcast_module(self.head)
        if self.config.train.compile:
            self.train_model = torch.compile(self.train_model)

    def _loader(self) -> DataLoader:
        workers = self.config.data.num_workers
        return DataLoader(
            FlippedDataset(self.dataset),
            batch_sampler=self.sampler,
            num_workers=workers,
            pin_memory=self.device.type == "cuda",
            persistent_workers=False,
            prefetch_factor=4 if workers > 0 else None,
            # Its own generator: creating an iterator must not draw from the global RNG, or a
            # resumed run (one more iterator) would diverge from an uninterrupted one.
            generator=torch.Generator().manual_seed(self.config.train.seed * 100003 + self.epoch),
        )

    # -------------------------------------------------------------------------------- checkpoints
    def checkpoint_payload(self) -> dict[str, Any]:
        """The checkpoint dict (:mod:`igfiqa.checkpoint`); collective: every rank must call it."""
        head_state = self.head.state_dict()
        head_opt = self.opt_head.state_dict()
        if isinstance(self.head, ShardedMarginHead):
            head_state = {"weight": self.head.full_weight().cpu()}
            # state_dict() shares the per-parameter dicts with the live optimizer: copy them.
            states = {}
            for key, entry in head_opt["state"].items():
                entry = dict(entry)
                if entry.get("momentum_buffer") is not None:
                    entry["momentum_buffer"] = self.head.gather_shards(entry["momentum_buffer"])
                states[key] = entry
            head_opt = {**head_opt, "state": states}
        rng = _gather_objects(capture_rng_state())
        augment = _gather_objects(self.augment.state_dict() if self.augment else None)
        return {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "model_spec": self.config.model.spec(),
            "model": {k: v.detach().cpu() for k, v in unwrap(self.model).state_dict().items()},
            "head": {k: v.detach().cpu() for k, v in head_state.items()},
            "head_meta": {
                "kind": self.config.head.kind,
                "s": self.config.head.s,
                "m": self.config.head.m,
                "num_classes": self.num_classes,
                "sharded": bool(self.config.head.sharded),
            },
            "optimizer": {"backbone": self.opt_backbone.state_dict(), "head": head_opt},
            "scheduler": self.schedule.state_dict(),
            "scaler": self.scaler.state_dict(),
            "epoch": self.epoch,
            "step": self.step,
            "guidance": self.guidance.state_dict() if self.guidance is not None else None,
            "augment": {"ranks": augment} if self.augment is not None else None,
            "sampler": self.sampler.state_dict(),
            "rng": {"ranks": rng},
            "world_size": self.info.world_size,
            "nonfinite": {"total": self.nonfinite_total, "in_a_row": self.nonfinite_in_a_row},
            "metrics": dict(self.last_metrics),
            "config": self.config.to_dict(),
            "class_names": self.class_names,
            "igfiqa_version": __version__,
        }

    def save(self) -> Path | None:
        """Write a checkpoint (collective); refuses weights that are not finite (NaN/inf), so the
        newest checkpoint is always one a run can continue from."""
        self._stop_if_weights_not_finite(with_state=True)
        payload = self.checkpoint_payload()
        path = None
        if self.info.is_main:
            path = save_checkpoint(
                payload, self.run_dir / CHECKPOINT_DIR, keep=self.config.checkpoint.keep
            )
        distributed.barrier()
        self.last_checkpoint = path
        return path

    def _load_latest(self) -> None:
        path = latest_checkpoint(self.run_dir / CHECKPOINT_DIR)
        if path is None:
            raise CheckpointError(
                f"nothing to resume in {self.run_dir}: no checkpoints/step_*.pt there"
            )
        state = load_checkpoint(path, map_location="cpu")
        self.load_state(state, path)
        self.resumed_from = path
        self.last_metrics = {
            k: float(v) for k, v in (state.get("metrics") or {}).items() if isinstance(v, float)
        }

    def load_state(self, state: dict[str, Any], path: Path) -> None:
        """Restore everything from a checkpoint dict (see :meth:`checkpoint_payload`)."""
        info = self.info
        try:
            saved_spec = dict(state["model_spec"])
            if saved_spec != self.config.model.spec():
                raise CheckpointError(
                    f"{path}: the checkpoint's model {saved_spec} differs from the config's "
                    f"{self.config.model.spec()}; resume with the run's own config.yaml"
                )
            unwrap(self.model).load_state_dict(state["model"])
            full_head = state["head"]["weight"]
            if full_head.shape[0] != self.num_classes:
                raise CheckpointError(
                    f"{path}: the checkpoint has {full_head.shape[0]} classes, the data "
                    f"{self.num_classes}; resume with the same data.source"
                )
            head_opt = state["optimizer"]["head"]
            if isinstance(self.head, ShardedMarginHead):
                self.head.load_full_weight(full_head)
                for entry in head_opt["state"].values():
                    if entry.get("momentum_buffer") is not None:
                        entry["momentum_buffer"] = self.head.shard_of(entry["momentum_buffer"])
            else:
                self.head.load_state_dict({"weight": full_head})
            self.opt_backbone.load_state_dict(state["optimizer"]["backbone"])
            self.opt_head.load_state_dict(head_opt)
            self.schedule.load_state_dict(state["scheduler"])
            self.scaler.load_state_dict(state["scaler"])
            if self.guidance is not None:
                if state["guidance"] is None:
                    raise CheckpointError(
                        f"{path} was trained without guidance but this config enables it"
                    )
                self.guidance.load_state_dict(state["guidance"])
                self.guidance.to(self.device)
            self.sampler.load_state_dict(state["sampler"])
            self.epoch = int(state["epoch"])
            self.step = int(state["step"])
            nonfinite = state.get("nonfinite") or {}
            self.nonfinite_total = int(nonfinite.get("total", 0))
            self.nonfinite_in_a_row = int(nonfinite.get("in_a_row", 0))
            saved_world = int(state.get("world_size", 1))
            same_world = saved_world == info.world_size
            if same_world:
                restore_rng_state(state["rng"]["ranks"][info.rank])
                if self.augment is not None and state["augment"] is not None:
                    self.augment.load_state_dict(state["augment"]["ranks"][info.rank])
            else:
                # Count steps in this run's global batches from the sampler's sample position.
                self.step = (
                    self.sampler.epoch * self.steps_per_epoch
                    + self.sampler.position // self.sampler.global_batch
                )
                self.schedule.step_count = self.step
                self.schedule.apply()
                if info.is_main:
                    print(
                        f"note: {path} was written by {saved_world} processes, this run has "
                        f"{info.world_size}: weights, optimizer, guidance and the sample position "
                        f"are restored (the sharded head is re-split; steps are now counted in "
                        f"global batches of {self.sampler.global_batch}, so this is step "
                        f"{self.step}); per-process RNG streams start afresh, so the continuation "
                        "is not bitwise identical to an uninterrupted run",
                        file=sys.stderr,  # stdout carries the run's JSON summary
                    )
        except CheckpointError:
            raise
        except (KeyError, IndexError, TypeError, ValueError, RuntimeError) as error:
            raise CheckpointError(
                f"{path} does not fit this run: {type(error).__name__}: {error}"
            ) from error

    # -------------------------------------------------------------------------------- one step
    def train_step(self, images: torch.Tensor, labels: torch.Tensor) -> dict[str, float] | None:
        """One optimizer step; returns its metrics, or None when skipped for a non-finite loss."""
        from igfiqa.method.objective import compute_objective

        cfg = self.config
        # A skipped step must leave no trace: keep the guidance state and BN statistics
        # (which the forward pass updates) to restore them.
        backup = None
        if self.guidance is not None:
            backup = (self.guidance.values.clone(), self.guidance.seen.clone())
        buffers = self._float_buffers
        buffer_backup = torch._foreach_mul(buffers, 1.0) if buffers else []
        with _autocast(self.device, cfg.train.amp):
            out = compute_objective(
                self.train_model,
                self.head,
                images,
                labels,
                cfg.method.objective,
                guidance=self.guidance,
                augment=self.augment,
            )
        loss = out.loss
        bad = _any_rank(not bool(torch.isfinite(loss.detach()).item()), self.device)
        grad_norm = float("nan")
        if not bad:
            self.opt_backbone.zero_grad(set_to_none=True)
            self.opt_head.zero_grad(set_to_none=True)
            self.scaler.scale(loss).backward()
            if self.info.distributed and not self.sharded:
                distributed.all_reduce_gradients(list(self.head.parameters()))
            self.scaler.unscale_(self.opt_backbone)
            self.scaler.unscale_(self.opt_head)
            if cfg.optim.grad_clip is not None:
                norm = torch.nn.utils.clip_grad_norm_(self.backbone_params, cfg.optim.grad_clip)
            else:
                norm = torch.linalg.vector_norm(
                    torch.stack(
                        [p.grad.detach().norm() for p in self.backbone_params if p.grad is not None]
                    )
                )
            grad_norm = float(norm)
            # With fp16 the scaler itself skips steps with inf/NaN gradients and lowers its scale.
            if not math.isfinite(grad_norm) and not self.scaler.is_enabled():
                bad = True
        if bad:
            # Only here (a rare step) are the weights themselves checked: a non-finite loss from
            # non-finite weights cannot be skipped away, the run has diverged.
            self._stop_if_weights_not_finite()
            self.opt_backbone.zero_grad(set_to_none=True)
            self.opt_head.zero_grad(set_to_none=True)
            if buffers:
                torch._foreach_copy_(buffers, buffer_backup)
            if backup is not None:
                state = self.guidance.state_dict()
                state["values"], state["seen"] = backup
                self.guidance.load_state_dict(state)
                self.guidance.to(self.device)
            self.nonfinite_total += 1
            self.nonfinite_in_a_row += 1
            limit = cfg.train.max_nonfinite_in_a_row
            if self.nonfinite_in_a_row >= limit:
                raise NonFiniteLossError(
                    f"{self.nonfinite_in_a_row} steps in a row had a non-finite loss or gradient "
                    f"(last at step {self.step}, loss {float(loss.detach())}): the run diverged. "
                    "Lower optim.lr, use train.amp=bf16 instead of fp16, check the data, or raise "
                    f"train.max_nonfinite_in_a_row (now {limit}); resume from the last checkpoint "
                    f"in {self.run_dir / CHECKPOINT_DIR}"
                )
            return None
        self.scaler.step(self.opt_backbone)
        self.scaler.step(self.opt_head)
        self.scaler.update()
        self.nonfinite_in_a_row = 0
        metrics = {
            "loss": float(loss.detach()),
            "grad_norm": grad_norm,
            **{k: float(v) for k, v in out.diagnostics.items()},
        }
        return metrics

    # ------------------------------------------------------------------------- divergence
    def _diverged(self, where: str) -> NonFiniteLossError:
        cfg = self.config
        latest = latest_checkpoint(self.run_dir / CHECKPOINT_DIR)
        todo = (
            f"{latest} is the last good checkpoint: resume it with a lower optim.lr or start again"
            if latest
            else "no checkpoint was written: start again with a lower optim.lr"
        )
        return NonFiniteLossError(
            f"step {self.step}: the weights are no longer finite (NaN or infinity, first in "
            f"{where}): the run diverged, most likely because the learning rate is too high "
            f"(optim.lr={cfg.optim.lr:g}, {self.lr:g} for the global batch of "
            f"{self.sampler.global_batch}); these weights were not saved, {todo}"
        )

    def _training_tensors(self, with_state: bool) -> list[tuple[str, torch.Tensor]]:
        """The weights (``with_state``: also the buffers and the optimizers' momentum), named."""
        model = unwrap(self.model)
        named: list[tuple[str, Any]] = [
            *((f"model.{n}", t) for n, t in model.named_parameters()),
            *((f"head.{n}", t) for n, t in self.head.named_parameters()),
        ]
        if with_state:
            named += [(f"model.{n}", t) for n, t in model.named_buffers()]
            for part, optimizer in (("backbone", self.opt_backbone), ("head", self.opt_head)):
                for index, state in enumerate(optimizer.state.values()):
                    named += [(f"optimizer.{part}.{index}.{k}", v) for k, v in state.items()]
        return [
            (n, t)
            for n, t in named
            if isinstance(t, torch.Tensor) and t.is_floating_point() and t.numel() > 0
        ]

    def _first_nonfinite(self, with_state: bool = False) -> str | None:
        """The name of the first tensor holding a NaN or infinity, "another process's weights"
        when only another rank's do, or None (collective: every rank must call it).

        One min/max pass per tensor on its device (NaN propagates through both, an infinity
        is the minimum or the maximum; no copy, no change to any value) and one synchronisation."""
        named = self._training_tensors(with_state)
        bad: list[str] = []
        if named:
            with torch.no_grad():
                ends = torch.stack(
                    [torch.stack(torch.aminmax(t.detach())).float() for _, t in named]
                )
                finite = torch.isfinite(ends).all(dim=1)
                if not bool(finite.all()):
                    flags = finite.tolist()
                    bad = [name for (name, _), ok in zip(named, flags, strict=True) if not ok]
        if not _any_rank(bool(bad), self.device):
            return None
        return bad[0] if bad else "another process's weights"

    def _stop_if_weights_not_finite(self, with_state: bool = False) -> None:
        where = self._first_nonfinite(with_state)
        if where is not None:
            raise self._diverged(where)

    # -------------------------------------------------------------------------------- the loop
    def _batches(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        for images, labels in self._loader():
            images = images.to(self.device, non_blocking=True)
            if self.config.train.channels_last:
                images = images.contiguous(memory_format=torch.channels_last)
            yield images, labels.to(self.device, non_blocking=True).long()

    def run(self) -> TrainResult:
        """Train until the epochs, ``max_steps`` or a signal end the run; save and verify at the end."""
        info = self.info
        # A finished run resumed again keeps its final checkpoint as it is.
        self.last_checkpoint: Path | None = self.resumed_from
        if info.is_main:
            self._prepare_run_folder()
        log = _MetricsLog(self.run_dir if info.is_main else None, self.config.logging.tensorboard)
        limit = self._step_limit()
        bar = ProgressBar(
            "train",
            limit,
            enabled=self.show_progress and info.is_main,
            done=self.step,
            unit="steps",
            fields={"epoch": "epoch {}", "speed": "{:.1f} img/s", "loss": "loss {:.3f}"},
        )
        # Text lines on standard error where no bar is shown (rank 0 only): a batch job's log.
        self._textlog = TrainingLog(
            self.config.logging.stderr_every_steps,
            enabled=info.is_main and not bar.shown and self.config.logging.stderr_every_steps > 0,
            total=limit,
            epochs=self.config.train.epochs,
            steps_per_epoch=self.steps_per_epoch,
            step=self.step,
        )
        if self.resumed_from is not None:
            self._textlog.resumed(self.resumed_from)
        else:
            self._textlog.start(batch=self.sampler.global_batch, device=str(self.device))
        stop = _StopFlag()
        stop.install()
        speed = _Speedometer()
        self._verification: dict[str, dict[str, float]] = {}
        try:
            if info.is_main and self.step == 0:
                log.write(self._start_record())
            stopped = "completed"
            while (
                self.step < limit and self.step // self.steps_per_epoch < self.config.train.epochs
            ):
                if self._train_one_epoch(limit, log, bar, stop, speed):
                    stopped = "signal"
                    break
                if self.step % self.steps_per_epoch == 0:
                    self._textlog.epoch_end(self.step)
                self._end_of_epoch_checkpoint(limit)
            if stopped != "signal":
                stopped = "completed" if self.step >= self.total_steps else "max_steps"
            return self._finish(stopped, stop, speed, log)
        except IgfiqaError as error:
            if info.is_main:  # the log says how the run ended (if the log itself can be written)
                with contextlib.suppress(IgfiqaError):
                    log.write({"kind": "error", "step": self.step, "message": str(error)})
            raise
        finally:
            stop.restore()
            bar.close()
            log.close()

    def _prepare_run_folder(self) -> None:
        """The run folder, cleaned of a killed run's temporary files, with the resolved config; a
        resumed run's metrics are cut back to its checkpoint's step."""
        ensure_dir(self.run_dir, "the run folder (--out)")
        for folder in (self.run_dir, self.run_dir / CHECKPOINT_DIR):  # left by a kill -9
            with writing(folder, "remove temporary files in"):
                remove_stale_temp_files(folder)
        atomic_write_text(self.config.to_yaml(), self.run_dir / CONFIG_FILE)
        if self.resumed_from is not None:
            truncate_metrics(self.run_dir / METRICS_FILE, self.step)

    def _step_limit(self) -> int:
        return self.total_steps if self.max_steps is None else min(self.max_steps, self.total_steps)

    def _start_record(self) -> dict[str, Any]:
        return {
            "kind": "start",
            "step": 0,
            "world_size": self.info.world_size,
            "num_classes": self.num_classes,
            "num_images": len(self.dataset),
            "steps_per_epoch": self.steps_per_epoch,
            "lr": self.lr,
            "device": str(self.device),
        }

    def _train_one_epoch(
        self, limit: int, log: _MetricsLog, bar: ProgressBar, stop: _StopFlag, speed: _Speedometer
    ) -> bool:
        """Steps of the current epoch, from wherever the sampler stands, until its end or ``limit``.
        Returns whether a signal asked the run to stop."""
        cfg = self.config
        self.epoch = self.step // self.steps_per_epoch
        position = (self.step % self.steps_per_epoch) * self.sampler.global_batch
        if self.sampler.epoch != self.epoch or self.sampler.position != position:
            self.sampler.set_epoch(self.epoch, position)
        if self.guidance is not None:
            self.guidance.set_epoch(self.epoch, cfg.train.epochs)
        self._set_train_mode(True)
        for images, labels in self._batches():
            lr = self.schedule.get_last_lr()[0]
            metrics = self.train_step(images, labels)
            self.sampler.advance()
            self.schedule.step()
            self.step += 1
            speed.add(images.shape[0] * self.info.world_size)
            self._textlog.step(
                self.step,
                loss=None if metrics is None else metrics["loss"],
                lr=lr,
                images=images.shape[0] * self.info.world_size,
            )
            if metrics is not None:
                self.last_metrics = metrics
            elif self.info.is_main:
                log.write(self._nonfinite_record())
            if self.step % cfg.logging.every_steps == 0 or self.step == limit:
                record = self._train_record(lr, speed.lap())
                if self.info.is_main:
                    log.write(record)
            bar.update(
                self.step,
                epoch=self.epoch + 1,
                speed=speed.last,
                loss=self.last_metrics.get("loss", float("nan")),
            )
            if _any_rank(stop.signum is not None, self.device):
                return True
            self._periodic_checkpoint_and_verification(log)
            if self.step >= limit:
                break
        return False

    def _nonfinite_record(self) -> dict[str, Any]:
        return {
            "kind": "nonfinite",
            "step": self.step,
            "epoch": self.epoch,
            "in_a_row": self.nonfinite_in_a_row,
            "total": self.nonfinite_total,
        }

    def _train_record(self, lr: float, images_per_s: float) -> dict[str, Any]:
        record = {
            "kind": "train",
            "step": self.step,
            "epoch": self.epoch,
            "lr": lr,
            "images_per_s": images_per_s,
            "nonfinite_total": self.nonfinite_total,
            **self.last_metrics,
        }
        if self.guidance is not None:
            record["guidance_momentum"] = float(self.guidance.momentum)
        return record

    def _periodic_checkpoint_and_verification(self, log: _MetricsLog) -> None:
        cfg = self.config
        every = cfg.checkpoint.every_steps
        if every and self.step % every == 0:
            self.save()
        verify_every = cfg.verification.every_steps
        if verify_every and cfg.verification.sets and self.step % verify_every == 0:
            self._verification = self.verify(log)

    def _end_of_epoch_checkpoint(self, limit: int) -> None:
        """At an epoch's end (not the run's), unless the step cadence just saved."""
        every = self.config.checkpoint.every_steps
        epoch_done = self.step % self.steps_per_epoch == 0
        if (
            epoch_done
            and self.config.checkpoint.at_epoch_end
            and self.step < limit
            and not (every and self.step % every == 0)
        ):
            self.save()

    def _finish(
        self, stopped: str, stop: _StopFlag, speed: _Speedometer, log: _MetricsLog
    ) -> TrainResult:
        """The final checkpoint (unless the last save was this step's), the final verification and
        the run's result, logged."""
        cfg = self.config
        self.epoch = self.step // self.steps_per_epoch
        elapsed = speed.elapsed()  # training only, not the final save/checks
        if self.last_checkpoint is None or not self.last_checkpoint.name.endswith(
            f"{self.step:08d}.pt"
        ):
            self.save()
        if stopped != "signal" and cfg.verification.at_end and cfg.verification.sets:
            self._verification = self.verify(log)
        result = TrainResult(
            run_dir=self.run_dir,
            checkpoint=self.last_checkpoint,
            step=self.step,
            epoch=self.epoch,
            stopped=stopped,
            signum=stop.signum if stopped == "signal" else None,
            metrics=dict(self.last_metrics),
            verification=self._verification,
            nonfinite_steps=self.nonfinite_total,
            images_per_second=speed.run_images / max(elapsed, 1e-9),
        )
        self._textlog.finish(self.step, stopped=stopped, images_per_second=result.images_per_second)
        if self.info.is_main:
            log.write(
                {
                    "kind": "end",
                    "step": self.step,
                    "epoch": self.epoch,
                    "stopped": stopped,
                    "checkpoint": str(self.last_checkpoint),
                    "images_per_s": result.images_per_second,
                }
            )
        return result

    def _set_train_mode(self, training: bool) -> None:
        self.model.train(training)
        self.head.train(training)

    def verify(self, log: _MetricsLog) -> dict[str, dict[str, float]]:
        """Periodic verification on ``config.verification.sets`` (rank 0 computes, all wait)."""
        from igfiqa.engine.validation import run_verification

        results: dict[str, dict[str, float]] = {}
        if self.info.is_main:
            self._set_train_mode(False)
            try:
                results = run_verification(unwrap(self.model), self.config, device=self.device)
            finally:
                self._set_train_mode(True)
            for name, values in results.items():
                log.write({"kind": "verification", "set": name, "step": self.step, **values})
            self._textlog.verification(self.step, results)
        distributed.barrier()
        return results


def train(
    config: IgfiqaConfig | dict[str, Any],
    *,
    out_dir: str | os.PathLike[str],
    resume: bool = False,
    max_steps: int | None = None,
    progress: bool = True,
    dataset: Any = None,
) -> TrainResult:
    """Train (or, with ``resume=True``, continue) a FIQA model; returns a :class:`TrainResult`.

    Args:
        config: the resolved config (or a plain dict, validated here).
        out_dir: the run folder (``config.yaml``, ``metrics.jsonl``, ``checkpoints/``).
        resume: continue from the newest checkpoint in ``out_dir``.
        max_steps: stop after this many optimizer steps in total (overrides ``train.max_steps``).
        progress: show a progress bar (rank 0, when standard error is a terminal); where no bar
            is shown, text lines go to standard error every ``logging.stderr_every_steps`` steps.
        dataset: an already opened training dataset (else ``config.data.source`` is opened).

    Under ``torchrun`` every process calls this; only rank 0 writes files.
    """
    if not isinstance(config, IgfiqaConfig):
        config = config_from_dict(config)
    # Machine bounds (workers, model and batch size) before any work.
    check_resources(config)
    # Process-wide switches that train() changes are put back afterwards.
    deterministic = torch.are_deterministic_algorithms_enabled()
    cudnn_benchmark = torch.backends.cudnn.benchmark
    trainer = Trainer(
        config, out_dir, resume=resume, max_steps=max_steps, progress=progress, dataset=dataset
    )
    # One writer per run folder (rank 0 of a torchrun job holds it for all ranks).
    lock = None
    created = False
    if trainer.info.is_main:
        created = not Path(out_dir).exists()
        folder = ensure_dir(out_dir, "the run folder (--out)")
        try:
            with writing(folder / LOCK_FILE, "create the lock file"):
                lock = FolderLock(folder).acquire()
        except BaseException:
            if created:
                with contextlib.suppress(OSError):
                    folder.rmdir()
            distributed.teardown(trainer.info)
            raise
    try:
        trainer.build()
        return trainer.run()
    except BaseException:
        if lock is not None and created:
            lock.release()
            with contextlib.suppress(OSError):
                Path(out_dir).rmdir()  # only if it is still empty: nothing of ours is left there
        raise
    finally:
        if lock is not None:
            lock.release()
        distributed.teardown(trainer.info)
        torch.use_deterministic_algorithms(deterministic)
        torch.backends.cudnn.benchmark = cudnn_benchmark


__all__ = ["NonFiniteLossError", "TrainResult", "Trainer", "train"]
