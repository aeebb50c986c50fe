"""Recording a module's output with a forward hook, only inside a `with` block.

    >>> import torch
    >>> layer = torch.nn.Linear(2, 2)
    >>> rec = OutputRecorder(layer)
    >>> with rec:
    ...     _ = layer(torch.zeros(1, 2))
    >>> rec.output.shape
    torch.Size([1, 2])

The hook is attached once at construction; outside the block it records nothing, and entering
the block clears what the previous block recorded.
"""
from __future__ import annotations

from typing import Any

from torch import nn


class OutputRecorder:
    def __init__(self, module: nn.Module):
        self._active = False
        self.output: Any = None
        module.register_forward_hook(self._hook)

    def _hook(self, module: nn.Module, args: Any, output: Any) -> None:
        if self._active:
            self.output = output

    def __enter__(self) -> "OutputRecorder":
        self.output, self._active = None, True
        return self

    def __exit__(self, *exc: Any) -> None:
        self._active = False
