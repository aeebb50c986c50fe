"""Distillation engine: the stage model, its losses and the student/teacher alignment."""
from mtpd.distill import losses  # noqa: F401  (registers the losses with mmdet's MODELS)
from mtpd.distill.model import StageDistiller, build_distiller_cfg  # noqa: F401
