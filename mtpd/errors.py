"""The errors a user can fix, one class per kind of input; no heavy imports.

Every `mtpd` entry point turns these into one line on stderr and exit code 2 (`mtpd.cli`),
so their messages must name the file, key or value at fault and say how to fix it.
"""
from __future__ import annotations


class MtpdError(ValueError):
    """Base class: a problem with the user's input, reported as one line."""


class PipelineConfigError(MtpdError):
    """The pipeline config (config/*.yaml) is invalid; the message lists every problem by key."""


class ModelConfigError(MtpdError):
    """An MMDetection model config cannot be found or adapted; the message names it and the key."""


class DatasetError(MtpdError):
    """A dataset manifest, annotation file or image is unusable; the message names the file."""


class CheckpointError(MtpdError):
    """A checkpoint is missing, corrupt, unsafe or of the wrong kind; the message names it."""


class ResultsError(MtpdError):
    """A results tree that `mtpd tables` cannot read or finds incomplete; the message names the
    file and the job that writes it."""


class BGSError(MtpdError):
    """A Backward Greedy Selection state file is missing, inconsistent or from the wrong split."""


class TrainingError(MtpdError):
    """A training run cannot go on (e.g. a non-finite loss); the message says where and why."""


class TrainingInterrupted(MtpdError):
    """A training job was told to stop (SIGTERM from SLURM) after saving a checkpoint."""


class TeacherCheckError(MtpdError):
    """A teacher evaluates far below the AP its checkpoint is recorded with."""


class PreflightError(MtpdError):
    """A model of an experiment cannot be built, initialised or distilled from as configured;
    the message names each model, the key at fault and the fix (`mtpd.preflight`)."""


class DeviceError(MtpdError):
    """A job can never get the GPUs it asked for; the message says what it sees and the fix."""


def one_line(e: BaseException) -> str:
    """An exception as the one line a user reads (every entry point's error line)."""
    if isinstance(e, MtpdError):  # a multi-line list of problems becomes one line
        return "; ".join(line.strip(" -") for line in str(e).splitlines() if line.strip())
    if isinstance(e, OSError) and e.filename:
        return f"{e.filename}: {e.strerror or e}"
    text = " ".join(str(e).split()) or "(no message)"
    return f"{type(e).__name__}: {text} (re-run with --debug for the traceback)"
