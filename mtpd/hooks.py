"""MMEngine hooks used by every mtpd training job (checkpoints and resume: `mtpd.resume`)."""
from __future__ import annotations

import math
import time
from typing import Any

from mmengine.dist import is_main_process
from mmengine.hooks import Hook
from mmengine.registry import HOOKS

from mtpd.checkpoint import save_model_checkpoint
from mtpd.errors import TrainingError
from mtpd.model_config import to_plain


@HOOKS.register_module()
class WallTimeHook(Hook):
    """Accumulates training wall time in the message hub, which MMEngine checkpoints and restores.

    So the time a model cost is known even when its job was killed and resumed.
    """

    priority = "VERY_HIGH"  # before any checkpoint is saved, so each holds its time

    def before_train(self, runner) -> None:
        self._start = time.perf_counter()
        self._base = float(runner.message_hub.get_info("mtpd_train_seconds", 0.0))

    def _update(self, runner) -> None:
        elapsed = self._base + time.perf_counter() - self._start
        runner.message_hub.update_info("mtpd_train_seconds", elapsed, resumed=True)

    def after_train_iter(self, runner, batch_idx: int, data_batch: Any = None,
                         outputs: Any = None) -> None:
        self._update(runner)

    def after_train(self, runner) -> None:
        self._update(runner)


@HOOKS.register_module()
class FiniteLossHook(Hook):
    """Stops training at the first non-finite loss term, naming it and the iteration.

    It runs before any checkpoint of the iteration is saved, so no NaN weights are ever written:
    the work directory keeps the last good checkpoint and the job's target is never written.
    """

    priority = "NORMAL"  # before ResumableCheckpointHook (VERY_LOW)

    def after_train_iter(self, runner, batch_idx: int, data_batch: Any = None,
                         outputs: Any = None) -> None:
        for name, value in (outputs or {}).items():
            number = float(value.detach().sum()) if hasattr(value, "detach") else value
            if isinstance(number, float) and not math.isfinite(number):
                raise TrainingError(
                    f"loss term '{name}' is {number} at iteration {runner.iter + 1} (epoch "
                    f"{runner.epoch + 1}); nothing was saved from this iteration on, the last "
                    f"good checkpoint is in {runner.work_dir}. Lower the learning rate or the "
                    "loss weight, delete that directory, and run the job again")


@HOOKS.register_module()
class SnapshotHook(Hook):
    """Writes the model's weights after given epochs (`paths`: epoch -> file), so a teacher's
    intermediate weights become teachers of their own at no extra training (`teachers.*.
    snapshots`). `info` is the checkpoint meta, completed with the epoch; the write is atomic,
    and a resumed job rewrites a snapshot only when it trains that epoch again."""

    priority = "LOW"  # after the LR scheduler and the FiniteLossHook

    def __init__(self, paths: dict[int, str], info: dict[str, Any]):
        self.paths = {int(k): str(v) for k, v in paths.items()}
        self.info = to_plain(info)  # the config hands it over as a ConfigDict

    def after_train_epoch(self, runner) -> None:
        epoch = runner.epoch + 1  # MMEngine counts finished epochs after this hook
        if epoch not in self.paths or not is_main_process():
            return
        model = runner.model.module if hasattr(runner.model, "module") else runner.model
        mtpd = {**self.info["mtpd"], "stage_epochs": epoch, "total_epochs": epoch,
                "snapshot_epoch": epoch,
                "train_seconds": runner.message_hub.get_info("mtpd_train_seconds", 0.0)}
        mtpd["total_train_seconds"] = mtpd["train_seconds"]
        save_model_checkpoint(self.paths[epoch], model.state_dict(), {**self.info, "mtpd": mtpd})
