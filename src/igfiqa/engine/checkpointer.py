"""A run's checkpoints: the live training parts to one checkpoint dict and back.

:class:`Checkpointer` holds the parts a run continues from (weights, optimizers, schedule, AMP scaler,
guidance, augmentation RNG, sampler position, RNG states and the :class:`RunState`) and writes them
in the one checkpoint format of :mod:`igfiqa.checkpoint` under ``run_dir/checkpoints``. A resumed
run restores all of them and continues bitwise as an uninterrupted one would; with another number of
processes it continues from the same sample position (the sharded head re-split, per-process RNG
streams afresh). Saving and loading are collective: under ``torchrun`` every rank calls them (the
sharded head and the per-rank RNG states are gathered), and only rank 0 writes the file.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import torch
from torch import nn

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
from igfiqa.collective import gather_objects, unwrap
from igfiqa.config import IgfiqaConfig
from igfiqa.engine import distributed
from igfiqa.engine.run_state import RunState
from igfiqa.engine.sampler import ResumableDistributedSampler
from igfiqa.engine.schedules import LRSchedule
from igfiqa.errors import CheckpointError
from igfiqa.models.sharded import ShardedMarginHead

CHECKPOINT_DIR = "checkpoints"


class Checkpointer:
    """Checkpoints of the parts given, in ``run_dir/checkpoints`` (the newest ``keep``; 0: all).

    ``last`` is the checkpoint this run wrote last (rank 0; None on the others) or resumed from;
    ``last_step`` the step it holds (on every rank)."""

    def __init__(
        self,
        run_dir: Path,
        config: IgfiqaConfig,
        info: distributed.DistInfo,
        *,
        state: RunState,
        model: nn.Module,
        head: nn.Module,
        opt_backbone: torch.optim.Optimizer,
        opt_head: torch.optim.Optimizer,
        schedule: LRSchedule,
        scaler: torch.amp.GradScaler,
        guidance: Any,
        augment: Any,
        sampler: ResumableDistributedSampler,
        class_names: list[str],
        num_classes: int,
    ) -> None:
        self.run_dir = run_dir
        self.folder = run_dir / CHECKPOINT_DIR
        self.config = config
        self.info = info
        self.state = state
        self.model = model
        self.head = head
        self.opt_backbone = opt_backbone
        self.opt_head = opt_head
        self.schedule = schedule
        self.scaler = scaler
        self.guidance = guidance
        self.augment = augment
        self.sampler = sampler
        self.class_names = class_names
        self.num_classes = num_classes
        self.last: Path | None = None
        self.last_step: int | None = None

    def latest(self) -> Path | None:
        """The newest checkpoint in the folder (of this run or a killed one), or None."""
        return latest_checkpoint(self.folder)

    def saved_at(self, step: int) -> bool:
        """Whether the last checkpoint written (or resumed from) holds ``step``."""
        return self.last_step == step

    # ------------------------------------------------------------------------------- writing
    def state_dict(self) -> dict[str, Any]:
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
        rng = gather_objects(capture_rng_state())
        augment = gather_objects(self.augment.state_dict() if self.augment else None)
        run = self.state.state_dict()
        config = self.config
        return {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "model_spec": config.model.spec(),
            "model": {k: v.detach().cpu() for k, v in unwrap(self.model).state_dict().items()},
            "head": {k: v.detach().cpu() for k, v in head_state.items()},
            "head_meta": {
                "kind": config.head.kind,
                "s": config.head.s,
                "m": config.head.m,
                "num_classes": self.num_classes,
                "sharded": bool(config.head.sharded),
            },
            "optimizer": {"backbone": self.opt_backbone.state_dict(), "head": head_opt},
            "scheduler": self.schedule.state_dict(),
            "scaler": self.scaler.state_dict(),
            "epoch": run["epoch"],
            "step": run["step"],
            "guidance": self.guidance.state_dict() if self.guidance is not None else None,
            "augment": {"ranks": augment} if self.augment is not None else None,
            "sampler": self.sampler.state_dict(),
            "rng": {"ranks": rng},
            "world_size": self.info.world_size,
            "nonfinite": run["nonfinite"],
            "metrics": run["metrics"],
            "config": config.to_dict(),
            "class_names": self.class_names,
            "igfiqa_version": __version__,
        }

    def save(self) -> Path | None:
        """Write ``step_<step>.pt`` atomically (collective; rank 0 writes, every rank waits)."""
        payload = self.state_dict()
        path = None
        if self.info.is_main:
            path = save_checkpoint(payload, self.folder, keep=self.config.checkpoint.keep)
        distributed.barrier()
        self.last, self.last_step = path, self.state.step
        return path

    # ------------------------------------------------------------------------------- reading
    def resume(self) -> Path:
        """Restore every part from the newest checkpoint; returns its path."""
        path = self.latest()
        if path is None:
            raise CheckpointError(
                f"nothing to resume in {self.run_dir}: no checkpoints/step_*.pt there"
            )
        payload = load_checkpoint(path, map_location="cpu")
        self.load_state_dict(payload, path)
        self.last, self.last_step = path, int(payload["step"])
        return path

    def load_state_dict(self, payload: dict[str, Any], path: Path) -> None:
        """Restore every part from a checkpoint dict (see :meth:`state_dict`) read from ``path``;
        one that does not fit this run raises :class:`CheckpointError` naming ``path``."""
        try:
            self._check_fits(payload, path)
            self._load_weights(payload)
            self.schedule.load_state_dict(payload["scheduler"])
            self.scaler.load_state_dict(payload["scaler"])
            if self.guidance is not None:
                if payload["guidance"] is None:
                    raise CheckpointError(
                        f"{path} was trained without guidance but this config enables it"
                    )
                self.guidance.load_state_dict(payload["guidance"])
                self.guidance.to(self.info.device)
            self.sampler.load_state_dict(payload["sampler"])
            self.state.load_state_dict(payload)
            saved_world = int(payload.get("world_size", 1))
            if saved_world == self.info.world_size:
                restore_rng_state(payload["rng"]["ranks"][self.info.rank])
                if self.augment is not None and payload["augment"] is not None:
                    self.augment.load_state_dict(payload["augment"]["ranks"][self.info.rank])
            else:
                self._continue_in_another_world(path, saved_world)
        except CheckpointError:
            raise
        except (KeyError, IndexError, TypeError, ValueError, RuntimeError) as error:
            raise CheckpointError(
                f"{path} does not fit this run: {type(error).__name__}: {error}"
            ) from error

    def _check_fits(self, payload: dict[str, Any], path: Path) -> None:
        saved_spec = dict(payload["model_spec"])
        if saved_spec != self.config.model.spec():
            raise CheckpointError(
                f"{path}: the checkpoint's model {saved_spec} differs from the config's "
                f"{self.config.model.spec()}; resume with the run's own config.yaml"
            )
        classes = payload["head"]["weight"].shape[0]
        if classes != self.num_classes:
            raise CheckpointError(
                f"{path}: the checkpoint has {classes} classes, the data "
                f"{self.num_classes}; resume with the same data.source"
            )

    def _load_weights(self, payload: dict[str, Any]) -> None:
        """The backbone, the margin head (re-split when sharded) and both optimizers."""
        unwrap(self.model).load_state_dict(payload["model"])
        full_head = payload["head"]["weight"]
        head_opt = payload["optimizer"]["head"]
        if isinstance(self.head, ShardedMarginHead):
            self.head.load_full_weight(full_head)
            for entry in head_opt["state"].values():
                if entry.get("momentum_buffer") is not None:
                    entry["momentum_buffer"] = self.head.shard_of(entry["momentum_buffer"])
        else:
            self.head.load_state_dict({"weight": full_head})
        self.opt_backbone.load_state_dict(payload["optimizer"]["backbone"])
        self.opt_head.load_state_dict(head_opt)

    def _continue_in_another_world(self, path: Path, saved_world: int) -> None:
        """Count steps in this run's global batches from the sampler's sample position."""
        sampler = self.sampler
        self.state.step = (
            sampler.epoch * sampler.steps_per_epoch + sampler.position // sampler.global_batch
        )
        self.schedule.step_count = self.state.step
        self.schedule.apply()
        if self.info.is_main:
            print(
                f"note: {path} was written by {saved_world} processes, this run has "
                f"{self.info.world_size}: weights, optimizer, guidance and the sample position "
                f"are restored (the sharded head is re-split; steps are now counted in "
                f"global batches of {sampler.global_batch}, so this is step "
                f"{self.state.step}); per-process RNG streams start afresh, so the continuation "
                "is not bitwise identical to an uninterrupted run",
                file=sys.stderr,  # stdout carries the run's JSON summary
            )


__all__ = ["CHECKPOINT_DIR", "Checkpointer"]
