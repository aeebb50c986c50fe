"""MMEngine hooks used by every mtpd training job."""
from __future__ import annotations

import time

from mmengine.hooks import Hook
from mmengine.registry import HOOKS


@HOOKS.register_module()
class WallTimeHook(Hook):
    """Accumulates training wall time in the message hub, which MMEngine checkpoints and restores.

    So the time a model cost is known even when its job was killed and resumed.
    """

    priority = "VERY_HIGH"  # before CheckpointHook, so each saved epoch holds its time

    def before_train(self, runner) -> None:
        self._start = time.perf_counter()
        self._base = float(runner.message_hub.get_info("mtpd_train_seconds", 0.0))

    def _update(self, runner) -> None:
        elapsed = self._base + time.perf_counter() - self._start
        runner.message_hub.update_info("mtpd_train_seconds", elapsed, resumed=True)

    def after_train_epoch(self, runner) -> None:
        self._update(runner)

    def after_train(self, runner) -> None:
        self._update(runner)
