"""Training that survives being killed: checkpoints, and a resume that follows the same schedule.

A COCO epoch is about an hour on 8 GPUs, and SLURM preempts, requeues and time-limits jobs.
`ResumableCheckpointHook` replaces MMEngine's CheckpointHook in every mtpd training job:

* it saves at every epoch end, every `interval_minutes`, and at the next iteration after a
  SIGTERM (what SLURM sends before a requeue or at the time limit), then stops the job;
* every save is atomic (temporary name, then rename) and the previous checkpoint is removed
  only once the new one and `last_checkpoint` are in place, so a kill or a full disk during a
  save always leaves a usable checkpoint (MMEngine 0.10 removes the old one first);
* each checkpoint also holds the RNG states and the position inside the epoch.

`ResumableEpochBasedTrainLoop` then resumes mid-epoch by skipping the batches already done
(same sampler order, since the sampler is seeded by epoch) without loading them, so iterations,
LR schedule and data order match an uninterrupted run (random augmentations too when data
loads in the main process, `num_workers: 0`).
"""
from __future__ import annotations

import itertools
import logging
import os
import random
import signal
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from mmengine.hooks import Hook
from mmengine.registry import HOOKS, LOOPS
from mmengine.runner import EpochBasedTrainLoop
from torch.utils.data import DataLoader

from mtpd.errors import TrainingError, TrainingInterrupted
from mtpd.io import atomic_write_text

log = logging.getLogger("mtpd.resume")
POSITION_KEY = "mtpd_iter_in_epoch"   # batches of the current epoch done when saved
RNG_KEY = "mtpd_rng"


def rng_state() -> dict[str, Any]:
    """Python, numpy and torch RNG states as tensors and plain values (weights-only safe)."""
    kind, keys, pos, has_gauss, gauss = np.random.get_state()
    return {"python": random.getstate(), "torch": torch.get_rng_state(),
            "numpy": {"kind": kind, "keys": torch.from_numpy(keys.astype(np.int64)),
                      "pos": int(pos), "has_gauss": int(has_gauss), "gauss": float(gauss)}}


def set_rng_state(state: dict[str, Any]) -> None:
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    torch.set_rng_state(state["torch"])
    n = state["numpy"]
    np.random.set_state((n["kind"], n["keys"].numpy().astype(np.uint32), n["pos"],
                         n["has_gauss"], n["gauss"]))


@HOOKS.register_module()
class ResumableCheckpointHook(Hook):
    """Atomic checkpoints at epoch ends, on a time interval and on SIGTERM (module docstring)."""

    priority = "VERY_LOW"  # after the LR scheduler has stepped for the iteration

    def __init__(self, interval_minutes: float = 15.0):
        self.interval = interval_minutes * 60.0
        self._signalled: int | None = None
        self._position = 0

    def before_train(self, runner) -> None:
        self._last_save = time.monotonic()
        for sig in (signal.SIGTERM, signal.SIGUSR1):
            signal.signal(sig, self._on_signal)

    def _on_signal(self, signum: int, frame: Any) -> None:
        self._signalled = signum  # acted on at the next iteration boundary

    def after_train_iter(self, runner, batch_idx: int, data_batch: Any = None,
                         outputs: Any = None) -> None:
        due = time.monotonic() - self._last_save >= self.interval
        if due or self._signalled:
            self._save(runner, position=batch_idx + 1, by_epoch=False)
        if self._signalled:
            name = signal.Signals(self._signalled).name
            raise TrainingInterrupted(
                f"stopped by {name} at iteration {runner.iter + 1}; a checkpoint is in "
                f"{runner.work_dir}, so running the job again resumes from there")

    def after_train_epoch(self, runner) -> None:
        self._save(runner, position=0, by_epoch=True)

    def before_save_checkpoint(self, runner, checkpoint: dict) -> None:
        checkpoint["meta"][POSITION_KEY] = self._position
        checkpoint[RNG_KEY] = rng_state()

    def after_load_checkpoint(self, runner, checkpoint: dict) -> None:
        if RNG_KEY in checkpoint:
            set_rng_state(checkpoint[RNG_KEY])
        loop = runner.train_loop
        if isinstance(loop, ResumableEpochBasedTrainLoop):
            loop.skip_batches = int(checkpoint.get("meta", {}).get(POSITION_KEY, 0))

    def _save(self, runner, position: int, by_epoch: bool) -> None:
        """Saves under a temporary name, renames, points `last_checkpoint` at it, and only then
        removes the older checkpoints of the work directory."""
        self._position = position
        work_dir = Path(runner.work_dir)
        name = f"epoch_{runner.epoch + 1}.pth" if by_epoch else f"iter_{runner.iter + 1}.pth"
        tmp = f".{name}.tmp"
        try:
            runner.save_checkpoint(str(work_dir), tmp, save_optimizer=True,
                                   save_param_scheduler=True, by_epoch=by_epoch)
        except (OSError, RuntimeError) as e:  # a full disk, a quota, a lost mount
            (work_dir / tmp).unlink(missing_ok=True)
            kept = (work_dir / "last_checkpoint").read_text().strip() \
                if (work_dir / "last_checkpoint").is_file() else "none yet"
            raise TrainingError(f"could not save checkpoint {work_dir / name} "
                                f"({' '.join(str(e).split())[:200]}); the previous one is kept "
                                f"({kept}): free disk space and run the job again to resume "
                                "from it") from e
        self._last_save = time.monotonic()
        if runner.rank != 0:
            return
        os.replace(work_dir / tmp, work_dir / name)
        atomic_write_text(work_dir / "last_checkpoint", str(work_dir / name))
        for old in itertools.chain(work_dir.glob("epoch_*.pth"), work_dir.glob("iter_*.pth")):
            if old.name != name:
                old.unlink(missing_ok=True)
        log.info("checkpoint %s (epoch %d, %d batches into it)", name,
                 runner.epoch + (1 if by_epoch else 0), position)


class _SkipBatches:
    """The batches of a batch sampler after the first `skip` (indices only: no data loaded)."""

    def __init__(self, batch_sampler: Any, skip: int):
        self.batch_sampler, self.skip = batch_sampler, skip

    def __iter__(self):
        return itertools.islice(iter(self.batch_sampler), self.skip, None)

    def __len__(self) -> int:
        return max(0, len(self.batch_sampler) - self.skip)


def _without_first_batches(loader: DataLoader, skip: int) -> DataLoader:
    return DataLoader(loader.dataset, batch_sampler=_SkipBatches(loader.batch_sampler, skip),
                      num_workers=loader.num_workers, collate_fn=loader.collate_fn,
                      pin_memory=loader.pin_memory, worker_init_fn=loader.worker_init_fn,
                      timeout=loader.timeout, generator=loader.generator,
                      multiprocessing_context=loader.multiprocessing_context)


@LOOPS.register_module()
class ResumableEpochBasedTrainLoop(EpochBasedTrainLoop):
    """EpochBasedTrainLoop that resumes inside an epoch where its checkpoint was taken."""

    skip_batches = 0

    def run_epoch(self) -> None:
        self.runner.call_hook("before_train_epoch")
        self.runner.model.train()
        skip, self.skip_batches = self.skip_batches, 0
        loader = _without_first_batches(self.dataloader, skip) if skip else self.dataloader
        if skip:
            log.info("resuming epoch %d after its first %d batches", self._epoch + 1, skip)
        for idx, data_batch in enumerate(loader, start=skip):
            self.run_iter(idx, data_batch)
        self.runner.call_hook("after_train_epoch")
        self._epoch += 1
