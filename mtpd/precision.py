"""Mixed-precision training (`train.precision`, `mtpd train --precision`): fp32, fp16 or bf16.

fp16 and bf16 train through MMEngine's AMP optimizer wrapper: the whole forward pass of a
training step (data preprocessing, the frozen teacher, the student) runs under autocast, while
weights, gradients, optimizer state and so every checkpoint stay fp32. fp16 adds dynamic loss
scaling (its small exponent range underflows small gradients); bf16 has fp32's range and needs
none. The distillation loss and its adapters run with autocast off, on `.float()` features
(`StageDistiller.distill_loss`), so a half-precision teacher feature never meets fp32
parameters outside autocast.

MMEngine 0.10's `AmpOptimWrapper` refuses to be built without a GPU, so every job uses
`MtpdAmpOptimWrapper`, the same wrapper that also runs on CPU with bf16: the CPU test goes
through the code a GPU job runs. fp16 is refused on CPU: torch 2.13 can autocast to it there, but
a RetinaNet step measured about 10x slower than fp32 on this project's CPU (emulated fp16), and
MMEngine's own `autocast` allows only bf16 on CPU.
"""
from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch
from mmengine.optim import AmpOptimWrapper, OptimWrapper
from mmengine.registry import OPTIM_WRAPPERS
from torch import nn

from mtpd.errors import TrainingError

# Each precision's autocast dtype (None: no autocast). The schema's train.precision enum and
# `mtpd train --precision` list the same names (tests/test_precision.py checks).
DTYPES: dict[str, str | None] = {"fp32": None, "fp16": "float16", "bf16": "bfloat16"}


@OPTIM_WRAPPERS.register_module()
class MtpdAmpOptimWrapper(AmpOptimWrapper):
    """MMEngine's `AmpOptimWrapper` that also builds on CPU, and scales the loss for fp16 only.

    Autocast follows the device of the model's parameters (CUDA, or CPU with bf16). Its state
    dict, saved in every resumable checkpoint, holds the loss scaler's state (empty for bf16).
    """

    def __init__(self, dtype: str | torch.dtype = "float16",
                 loss_scale: str | float | dict = "dynamic", **kwargs: Any):
        OptimWrapper.__init__(self, **kwargs)  # AmpOptimWrapper.__init__ asserts a GPU
        self.cast_dtype = getattr(torch, dtype) if isinstance(dtype, str) else dtype
        self._scale_update_param = loss_scale if isinstance(loss_scale, float) else None
        scaler = (loss_scale if isinstance(loss_scale, dict) else
                  {} if loss_scale == "dynamic" else {"init_scale": float(loss_scale)})
        self.loss_scaler = torch.amp.GradScaler(
            "cuda", enabled=self.cast_dtype == torch.float16, **scaler)

    def load_state_dict(self, state_dict: dict) -> None:
        if not state_dict.get("loss_scaler"):  # saved without a scaler (fp32, bf16): start anew
            state_dict.pop("loss_scaler", None)
        super().load_state_dict(state_dict)

    @contextmanager
    def optim_context(self, model: nn.Module) -> Iterator[None]:
        device = next(model.parameters()).device.type
        with OptimWrapper.optim_context(self, model), \
                torch.autocast(device, dtype=self.cast_dtype):
            yield


def configure_precision(cfg: Any, precision: str | None) -> str:
    """Makes a job config train in `precision` (None: the schema's train.precision) and returns
    it; fp32 keeps the model config's own optimizer wrapper.

    Refuses, in one line, what cannot run here: an unknown name, fp16 without CUDA, bf16 on a
    GPU without it, and a model config whose optimizer wrapper is not MMEngine's plain or AMP one.
    """
    if precision is None:
        from mtpd.pipeline_config import default

        precision = default("train.precision")
    if precision not in DTYPES:
        raise TrainingError(f"precision '{precision}' is unknown; use one of "
                            f"{', '.join(DTYPES)} (--precision, or train.precision)")
    if precision == "fp32":
        return precision
    if precision == "fp16" and not torch.cuda.is_available():
        raise TrainingError("precision fp16 needs a CUDA GPU and there is none here (CPU fp16 "
                            "is emulated, ~10x slower than fp32); use bf16 or fp32 on CPU "
                            "(--precision, or train.precision)")
    if precision == "bf16" and torch.cuda.is_available() and not torch.cuda.is_bf16_supported():
        raise TrainingError(f"precision bf16: GPU {torch.cuda.get_device_name()} does not "
                            "support bfloat16; use fp16 (--precision, or train.precision)")
    wrapper = cfg.optim_wrapper
    kind = wrapper.get("type", "OptimWrapper")
    if kind not in ("OptimWrapper", "AmpOptimWrapper", "MtpdAmpOptimWrapper"):
        raise TrainingError(f"precision {precision}: the model config's optim_wrapper type "
                            f"'{kind}' cannot be switched to mixed precision; use fp32, or an "
                            "OptimWrapper or AmpOptimWrapper in the model config")
    wrapper["type"], wrapper["dtype"] = "MtpdAmpOptimWrapper", DTYPES[precision]
    if precision == "fp16":
        wrapper.setdefault("loss_scale", "dynamic")
    else:
        wrapper.pop("loss_scale", None)
    return precision
