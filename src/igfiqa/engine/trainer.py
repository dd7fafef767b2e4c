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

The :class:`Trainer` builds the parts in ``__init__`` and keeps the loop; everything else is a small
part it calls: :class:`~igfiqa.engine.run_state.RunState` (step, epoch, skipped steps),
:class:`~igfiqa.engine.checkpointer.Checkpointer` (the parts to a checkpoint and back),
:class:`~igfiqa.engine.run_log.RunLog` (``metrics.jsonl``, progress bar or text lines, speed),
:class:`~igfiqa.engine.stop.StopFlag` (SIGTERM/SIGINT),
:class:`~igfiqa.engine.validation.PeriodicVerification` and :mod:`igfiqa.engine.divergence`
(non-finite weights and steps).

Distributed: with ``WORLD_SIZE > 1`` the process group is initialised from the environment
(``env://``), the backbone is wrapped in DistributedDataParallel, every rank reads its slice of each
global batch, the guidance state is updated with the gathered (label, CCS) pairs of all ranks
(identical everywhere), and only rank 0 writes files and logs.
"""

from __future__ import annotations

import contextlib
import math
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader

from igfiqa.checkpoint import latest_checkpoint
from igfiqa.collective import any_rank, unwrap
from igfiqa.config import IgfiqaConfig, config_from_dict
from igfiqa.engine import distributed
from igfiqa.engine.checkpointer import CHECKPOINT_DIR, Checkpointer
from igfiqa.engine.divergence import (
    NonFiniteLossError,
    diverged_error,
    nonfinite_names,
    too_many_skipped_error,
    training_tensors,
)
from igfiqa.engine.resources import check_resources
from igfiqa.engine.run_log import METRICS_FILE, RunLog
from igfiqa.engine.run_state import RunState
from igfiqa.engine.sampler import FlippedDataset, ResumableDistributedSampler
from igfiqa.engine.schedules import LRSchedule
from igfiqa.engine.stop import StopFlag
from igfiqa.engine.validation import PeriodicVerification
from igfiqa.errors import ConfigError, IgfiqaError
from igfiqa.files import (
    LOCK_FILE,
    FolderLock,
    atomic_write_text,
    ensure_dir,
    remove_stale_temp_files,
    writing,
)
from igfiqa.models import create_model
from igfiqa.models.heads import Margin, MarginHead
from igfiqa.models.sharded import ShardedMarginHead

CONFIG_FILE = "config.yaml"


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
def _autocast(device: torch.device, amp: str) -> contextlib.AbstractContextManager:
    if amp == "none":
        return contextlib.nullcontext()
    dtype = torch.bfloat16 if amp == "bf16" else torch.float16
    return torch.autocast(device_type=device.type, dtype=dtype)


def open_dataset(config: IgfiqaConfig) -> Any:
    """The training dataset of ``config.data`` (flips are applied by the sampler, not here)."""
    from igfiqa.data.datasets import open_training_dataset

    size = config.data.image_size or config.model.input_size
    return open_training_dataset(config.data.source, image_size=size, hflip=False)


# ------------------------------------------------------------------------------- building the parts
def _set_determinism(config: IgfiqaConfig, device: torch.device) -> None:
    if config.train.deterministic:
        torch.use_deterministic_algorithms(True, warn_only=False)
        torch.backends.cudnn.benchmark = False
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    elif device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    torch.manual_seed(config.train.seed)


def _build_model(config: IgfiqaConfig, device: torch.device) -> nn.Module:
    model = create_model(**config.model.spec()).to(device)
    if config.optim.train_embedding_bn_scale:
        model.features.weight.requires_grad_(True)
    return model


def _build_head(config: IgfiqaConfig, num_classes: int, world_size: int) -> nn.Module:
    """The margin head: every class here, or (``head.sharded``) this rank's share of them."""
    cfg = config
    margin = Margin(cfg.head.kind, cfg.head.s, cfg.head.m)
    if cfg.head.sharded:
        return ShardedMarginHead(
            cfg.model.num_features,
            num_classes,
            margin,
            embedding_grad_scale=float(world_size),
        )
    return MarginHead(cfg.model.num_features, num_classes, margin)


def _scaled_lr(config: IgfiqaConfig, world_size: int) -> float:
    """``optim.lr``, scaled to the global batch when ``optim.scale_lr``."""
    global_batch = config.data.batch_size * world_size
    scale = global_batch / config.optim.base_batch if config.optim.scale_lr else 1.0
    lr = config.optim.lr * scale
    if not math.isfinite(lr):
        raise ConfigError(
            f"optim.lr: {config.optim.lr:g} scaled to the global batch of {global_batch} is not "
            "a finite number; lower optim.lr (or --set optim.scale_lr=false)"
        )
    return lr


def _build_augmentation(config: IgfiqaConfig, rank: int) -> Any:
    """The quality-stream augmentation (IG-FIQA), or None where the config has none."""
    if not config.method.augment.enabled or config.method.objective.fiqa_batch == "same":
        return None
    from igfiqa.method.augment import QualityAugmentation

    # Every rank degrades its own images differently.
    return QualityAugmentation(config.method.augment, seed=config.train.seed * 1000 + 1 + rank)


def _refuse_another_runs_folder(run_dir: Path) -> None:
    """A fresh run does not write into a folder holding another run's checkpoints or logs."""
    if latest_checkpoint(run_dir / CHECKPOINT_DIR) is not None:
        raise ConfigError(
            f"{run_dir} already holds checkpoints of a run: continue it with "
            f"--resume {run_dir} (resume=True) or choose another --out folder"
        )
    foreign = [n for n in (CONFIG_FILE, METRICS_FILE) if (run_dir / n).exists()]
    if foreign:
        raise ConfigError(
            f"{run_dir} holds another run's {' and '.join(foreign)} (and no "
            "checkpoint to resume): choose another --out folder, or delete them to start "
            "afresh there"
        )


def _prepare_run_folder(run_dir: Path, config: IgfiqaConfig) -> None:
    """The run folder, cleaned of a killed run's temporary files, with the resolved config."""
    ensure_dir(run_dir, "the run folder (--out)")
    for folder in (run_dir, run_dir / CHECKPOINT_DIR):  # left by a kill -9
        with writing(folder, "remove temporary files in"):
            remove_stale_temp_files(folder)
    atomic_write_text(config.to_yaml(), run_dir / CONFIG_FILE)


# --------------------------------------------------------------------------------------- the trainer
class Trainer:
    """One training run: the parts, built in ``__init__`` (and, with ``resume``, restored from the
    newest checkpoint of ``out_dir``), and the loop (:meth:`run`, one step: :meth:`train_step`).
    :func:`train` is the public entry point; it holds the run folder's lock while this works.

    ``info``: the process group's rank, world size and device (:func:`igfiqa.engine.distributed.setup`
    is called when it is not given)."""

    def __init__(
        self,
        config: IgfiqaConfig,
        out_dir: str | os.PathLike[str],
        *,
        resume: bool = False,
        max_steps: int | None = None,
        progress: bool = True,
        dataset: Any = None,
        info: distributed.DistInfo | None = None,
    ) -> None:
        cfg = config
        self.config = config
        self.run_dir = Path(out_dir)
        self.max_steps = max_steps if max_steps is not None else cfg.train.max_steps
        self.show_progress = progress and cfg.logging.progress
        self.info = info if info is not None else distributed.setup(cfg.train.device)
        self.device = self.info.device
        # Built in an order that keeps seeded draws reproducible: determinism settings, data and
        # sampler, model and margin head, optimisers and schedule, the method's guidance and
        # augmentation, then resume (or refuse a folder of another run) and wrapping for DDP.
        _set_determinism(cfg, self.device)
        if dataset is None:
            cfg.check_paths()
            dataset = open_dataset(cfg)
        self.dataset = dataset
        self.num_classes = int(dataset.num_classes)
        self.sampler = ResumableDistributedSampler(
            len(dataset),
            cfg.data.batch_size,
            rank=self.info.rank,
            world_size=self.info.world_size,
            seed=cfg.train.seed,
            hflip=cfg.data.hflip,
        )
        self.steps_per_epoch = self.sampler.steps_per_epoch
        self.total_steps = self.steps_per_epoch * cfg.train.epochs
        # Same seed on every rank: identical initial weights (DDP also broadcasts rank 0's).
        self.model = _build_model(cfg, self.device)
        self.head = _build_head(cfg, self.num_classes, self.info.world_size).to(self.device)
        self.sharded = cfg.head.sharded and self.info.world_size > 1
        if cfg.train.channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)
        self.lr = _scaled_lr(cfg, self.info.world_size)
        sgd = dict(lr=self.lr, momentum=cfg.optim.momentum, weight_decay=cfg.optim.weight_decay)
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
        # The intra-class variance guidance and the quality-stream augmentation (IG-FIQA).
        self.guidance = cfg.method.guidance.build(self.num_classes)
        if self.guidance is not None:
            self.guidance.to(self.device)
        self.augment = _build_augmentation(cfg, self.info.rank)
        self.state = RunState()
        self.checkpointer = Checkpointer(
            self.run_dir,
            cfg,
            self.info,
            state=self.state,
            model=self.model,
            head=self.head,
            opt_backbone=self.opt_backbone,
            opt_head=self.opt_head,
            schedule=self.schedule,
            scaler=self.scaler,
            guidance=self.guidance,
            augment=self.augment,
            sampler=self.sampler,
            class_names=[str(name) for name in getattr(dataset, "class_names", [])],
            num_classes=self.num_classes,
        )
        self.verification = PeriodicVerification(cfg, device=self.device, main=self.info.is_main)
        self.stop = StopFlag()
        # Ranks draw different dropout masks from here on.
        torch.manual_seed(cfg.train.seed * 1000 + 7 + self.info.rank)
        self.resumed_from = self.checkpointer.resume() if resume else None
        if not resume:
            _refuse_another_runs_folder(self.run_dir)
        # The float buffers (BatchNorm statistics) a skipped step puts back.
        self._float_buffers = [
            b for b in [*self.model.buffers(), *self.head.buffers()] if b.is_floating_point()
        ]
        self.train_model = self._wrap_for_training()

    @property
    def step(self) -> int:
        """Optimizer steps taken (the run state's)."""
        return self.state.step

    def _wrap_for_training(self) -> nn.Module:
        """DDP (the head is broadcast unless sharded) and ``torch.compile`` where configured."""
        train_model: nn.Module = self.model
        if self.info.distributed:
            from torch.nn.parallel import DistributedDataParallel

            device_ids = [self.device.index] if self.device.type == "cuda" else None
            # No buffer broadcast at each forward (as insightface / CR-FIQA train): IG-FIQA runs the
            # model twice before one backward, and a broadcast in the second forward would
            # overwrite tensors the first one saved for backward (each rank keeps its own BN
            # statistics; checkpoints come from rank 0).
            train_model = DistributedDataParallel(
                self.model, device_ids=device_ids, broadcast_buffers=False
            )
            if not self.sharded:
                distributed.broadcast_module(self.head)
        if self.config.train.compile:
            train_model = torch.compile(train_model)
        return train_model

    # -------------------------------------------------------------------------------- the loop
    def run(self) -> TrainResult:
        """Train until the epochs, ``max_steps`` or a signal end the run; save and verify at the end."""
        if self.info.is_main:
            _prepare_run_folder(self.run_dir, self.config)
        limit = self._step_limit()
        log = RunLog(
            self.run_dir,
            self.config.logging,
            main=self.info.is_main,
            progress=self.show_progress,
            step=self.step,
            limit=limit,
            epochs=self.config.train.epochs,
            steps_per_epoch=self.steps_per_epoch,
            resumed=self.resumed_from is not None,
        )
        with log, self.stop:
            try:
                log.start(
                    self._start_record(),
                    resumed_from=self.resumed_from,
                    batch=self.sampler.global_batch,
                    device=str(self.device),
                )
                return self._finish(self._train(limit, log), log)
            except IgfiqaError as error:
                log.error(self.step, str(error))  # how the run ended
                raise

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

    def _train(self, limit: int, log: RunLog) -> str:
        """Epochs until ``limit``, the last epoch or a signal; returns how the training stopped."""
        while self.step < limit and self.step // self.steps_per_epoch < self.config.train.epochs:
            if self._train_one_epoch(limit, log):
                return "signal"
            if self.step % self.steps_per_epoch == 0:
                log.epoch_end(self.step)
            self._end_of_epoch_checkpoint(limit)
        return "completed" if self.step >= self.total_steps else "max_steps"

    def _train_one_epoch(self, limit: int, log: RunLog) -> bool:
        """Steps of the current epoch, from wherever the sampler stands, until its end or ``limit``.
        Returns whether a signal asked the run to stop."""
        state = self.state
        state.epoch = state.step // self.steps_per_epoch
        position = (state.step % self.steps_per_epoch) * self.sampler.global_batch
        if self.sampler.epoch != state.epoch or self.sampler.position != position:
            self.sampler.set_epoch(state.epoch, position)
        if self.guidance is not None:
            self.guidance.set_epoch(state.epoch, self.config.train.epochs)
        self._set_train_mode(True)
        for images, labels in self._batches():
            lr = self.schedule.get_last_lr()[0]
            metrics = self.train_step(images, labels)
            self.sampler.advance()
            self.schedule.step()
            state.step += 1
            if metrics is not None:
                state.last_metrics = metrics
            log.step(
                state,
                lr=lr,
                skipped=metrics is None,
                images=images.shape[0] * self.info.world_size,
                extra=self._record_extras(),
            )
            if any_rank(self.stop.requested, self.device):
                return True
            self._periodic_checkpoint_and_verification(log)
            if state.step >= limit:
                break
        return False

    def _batches(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        workers = self.config.data.num_workers
        loader = DataLoader(
            FlippedDataset(self.dataset),
            batch_sampler=self.sampler,
            num_workers=workers,
            pin_memory=self.device.type == "cuda",
            persistent_workers=False,
            prefetch_factor=4 if workers > 0 else None,
            # Its own generator: creating an iterator must not draw from the global RNG, or a
            # resumed run (one more iterator) would diverge from an uninterrupted one.
            generator=torch.Generator().manual_seed(
                self.config.train.seed * 100003 + self.state.epoch
            ),
        )
        for images, labels in loader:
            images = images.to(self.device, non_blocking=True)
            if self.config.train.channels_last:
                images = images.contiguous(memory_format=torch.channels_last)
            yield images, labels.to(self.device, non_blocking=True).long()

    def _record_extras(self) -> dict[str, float]:
        """The method's numbers for a ``train`` record."""
        if self.guidance is None:
            return {}
        return {"guidance_momentum": float(self.guidance.momentum)}

    def _periodic_checkpoint_and_verification(self, log: RunLog) -> None:
        every = self.config.checkpoint.every_steps
        if every and self.step % every == 0:
            self.save()
        if self.verification.due(self.step):
            self._verify(log)

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

    def _finish(self, stopped: str, log: RunLog) -> TrainResult:
        """The final checkpoint (unless the last save was this step's; a finished run resumed
        again keeps its final checkpoint as it is), the final verification and the run's result,
        logged."""
        state = self.state
        state.epoch = state.step // self.steps_per_epoch
        images_per_second = log.speed.run_rate()  # training only, not the final save/checks
        if not self.checkpointer.saved_at(state.step):
            self.save()
        if stopped != "signal" and self.verification.due_at_end:
            self._verify(log)
        result = TrainResult(
            run_dir=self.run_dir,
            checkpoint=self.checkpointer.last,
            step=state.step,
            epoch=state.epoch,
            stopped=stopped,
            signum=self.stop.signum if stopped == "signal" else None,
            metrics=dict(state.last_metrics),
            verification=self.verification.results,
            nonfinite_steps=state.nonfinite_total,
            images_per_second=images_per_second,
        )
        log.end(
            step=result.step,
            epoch=result.epoch,
            stopped=stopped,
            checkpoint=result.checkpoint,
            images_per_second=images_per_second,
        )
        return result

    def _set_train_mode(self, training: bool) -> None:
        self.model.train(training)
        self.head.train(training)

    def _verify(self, log: RunLog) -> None:
        """The verification sets (rank 0 computes and logs, every rank waits)."""
        results = self.verification(unwrap(self.model))
        log.verification(self.step, results)
        distributed.barrier()

    def save(self) -> Path | None:
        """Write a checkpoint (collective); refuses weights that are not finite (NaN/inf), so the
        newest checkpoint is always one a run can continue from."""
        self._check_weights_finite(with_state=True)
        return self.checkpointer.save()

    # -------------------------------------------------------------------------------- one step
    def train_step(self, images: torch.Tensor, labels: torch.Tensor) -> dict[str, float] | None:
        """One optimizer step; returns its metrics, or None when skipped for a non-finite loss."""
        from igfiqa.method.objective import compute_objective

        cfg = self.config
        # A skipped step must leave no trace: keep the guidance state and BN statistics
        # (which the forward pass updates) to restore them.
        guidance_backup = None
        if self.guidance is not None:
            guidance_backup = (self.guidance.values.clone(), self.guidance.seen.clone())
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
        bad = any_rank(not bool(torch.isfinite(loss.detach()).item()), self.device)
        grad_norm = float("nan")
        if not bad:
            grad_norm = self._backward(loss)
            # With fp16 the scaler itself skips steps with inf/NaN gradients and lowers its scale.
            bad = not math.isfinite(grad_norm) and not self.scaler.is_enabled()
        if bad:
            self._skip_step(buffer_backup, guidance_backup, float(loss.detach()))
            return None
        self.scaler.step(self.opt_backbone)
        self.scaler.step(self.opt_head)
        self.scaler.update()
        self.state.succeeded()
        return {
            "loss": float(loss.detach()),
            "grad_norm": grad_norm,
            **{k: float(v) for k, v in out.diagnostics.items()},
        }

    def _backward(self, loss: torch.Tensor) -> float:
        """Gradients of ``loss`` (the head's averaged over ranks unless sharded), unscaled and
        clipped to ``optim.grad_clip``; returns the backbone's gradient norm (before clipping)."""
        self.opt_backbone.zero_grad(set_to_none=True)
        self.opt_head.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        if self.info.distributed and not self.sharded:
            distributed.all_reduce_gradients(list(self.head.parameters()))
        self.scaler.unscale_(self.opt_backbone)
        self.scaler.unscale_(self.opt_head)
        clip = self.config.optim.grad_clip
        if clip is not None:
            return float(torch.nn.utils.clip_grad_norm_(self.backbone_params, clip))
        grads = [p.grad.detach().norm() for p in self.backbone_params if p.grad is not None]
        return float(torch.linalg.vector_norm(torch.stack(grads)))

    def _skip_step(
        self,
        buffer_backup: list[torch.Tensor],
        guidance_backup: tuple[torch.Tensor, torch.Tensor] | None,
        loss: float,
    ) -> None:
        """Undo a step with a non-finite loss or gradient; too many in a row stop the run."""
        # Only here (a rare step) are the weights themselves checked: a non-finite loss from
        # non-finite weights cannot be skipped away, the run has diverged.
        self._check_weights_finite()
        self.opt_backbone.zero_grad(set_to_none=True)
        self.opt_head.zero_grad(set_to_none=True)
        if buffer_backup:
            torch._foreach_copy_(self._float_buffers, buffer_backup)
        if guidance_backup is not None:
            state = self.guidance.state_dict()
            state["values"], state["seen"] = guidance_backup
            self.guidance.load_state_dict(state)
            self.guidance.to(self.device)
        in_a_row = self.state.skipped()
        limit = self.config.train.max_nonfinite_in_a_row
        if in_a_row >= limit:
            raise too_many_skipped_error(
                in_a_row=in_a_row,
                step=self.step,
                loss=loss,
                limit=limit,
                checkpoints=self.checkpointer.folder,
            )

    def _check_weights_finite(self, with_state: bool = False) -> None:
        """Raise :class:`NonFiniteLossError` when a weight (``with_state``: also a buffer or an
        optimizer's momentum) of any rank holds a NaN or an infinity (collective)."""
        optimizers = {"backbone": self.opt_backbone, "head": self.opt_head}
        named = training_tensors(unwrap(self.model), self.head, optimizers, with_state=with_state)
        bad = nonfinite_names(named)
        if not any_rank(bool(bad), self.device):
            return
        raise diverged_error(
            step=self.step,
            where=bad[0] if bad else "another process's weights",
            latest=self.checkpointer.latest(),
            lr=self.config.optim.lr,
            scaled_lr=self.lr,
            global_batch=self.sampler.global_batch,
        )


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
    info = distributed.setup(config.train.device)
    # One writer per run folder (rank 0 of a torchrun job holds it for all ranks).
    lock = None
    created = False
    if info.is_main:
        created = not Path(out_dir).exists()
        folder = ensure_dir(out_dir, "the run folder (--out)")
        try:
            with writing(folder / LOCK_FILE, "create the lock file"):
                lock = FolderLock(folder).acquire()
        except BaseException:
            if created:
                with contextlib.suppress(OSError):
                    folder.rmdir()
            distributed.teardown(info)
            raise
    try:
        trainer = Trainer(
            config,
            out_dir,
            resume=resume,
            max_steps=max_steps,
            progress=progress,
            dataset=dataset,
            info=info,
        )
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
        distributed.teardown(info)
        torch.use_deterministic_algorithms(deterministic)
        torch.backends.cudnn.benchmark = cudnn_benchmark


__all__ = ["NonFiniteLossError", "TrainResult", "Trainer", "train"]
