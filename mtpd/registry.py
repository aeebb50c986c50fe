"""Registering mtpd's modules (distiller, losses, hooks) with MMEngine's registries.

    >>> import mtpd
    >>> mtpd.register_all_modules()  # doctest: +SKIP

Like MMDetection's and MMRazor's `register_all_modules`: importing the modules registers them,
and `mmdet` becomes the default scope, so configs name `RetinaNet` and `StageDistiller`
alike. Kept out of `import mtpd`, which must stay cheap for the local rules.
"""
from __future__ import annotations


def register_all_modules(init_default_scope: bool = True) -> None:
    """Registers mmdet's and mtpd's modules; idempotent."""
    from mmdet.utils import register_all_modules as register_mmdet

    register_mmdet(init_default_scope=init_default_scope)
    # Importing registers: the distiller and losses, WallTimeHook and FiniteLossHook, the
    # resumable checkpoint hook and train loop, and the mixed-precision optimizer wrapper.
    from mtpd import distill, hooks, precision, resume  # noqa: F401
    from mtpd.pretrained import register_schemes

    register_schemes()  # torchvision:// weights without torchvision (mtpd.pretrained)
