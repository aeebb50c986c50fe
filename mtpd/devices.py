"""The device a runtime was measured on: runtimes from different devices are not comparable,
so every runtime mtpd reports (evaluation, streaming, benchmarks) carries this name."""
from __future__ import annotations

import platform
from pathlib import Path


def device_name(device: str | None = None) -> str:
    """What runtimes were measured on: `cuda: <GPU>` or `cpu: <model> (<n> threads)`.

    Runtimes from different devices are not comparable, so every one reported carries this."""
    import torch

    if device is None:
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if str(device).startswith("cuda"):
        return f"cuda: {torch.cuda.get_device_name(torch.device(device))}"
    return f"cpu: {_cpu_model()} ({torch.get_num_threads()} threads)"


def _cpu_model() -> str:
    """The CPU's model name from /proc/cpuinfo, else what the platform says."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown"
