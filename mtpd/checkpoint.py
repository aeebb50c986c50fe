"""Checkpoints that load safely under torch >= 2.6 (`weights_only=True`) and are written atomically.

Two kinds of file exist:

* **model checkpoints** (every file target of the DAG): `{"state_dict": ..., "meta": ...}` with
  only tensors and plain Python values, loadable by plain MMDetection (`init_detector`) and by
  `torch.load(..., weights_only=True)` without any allow-list;
* **MMEngine resume checkpoints** in a job's work directory: they also hold MMEngine's
  `HistoryBuffer` and numpy arrays. `allow_mmengine_checkpoints()` adds exactly those classes to
  torch's weights-only allow-list; nothing turns `weights_only` off.
"""
from __future__ import annotations

import pickle
import re
import shutil
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

import torch

from mtpd.errors import CheckpointError
from mtpd.io import atomic_path, sha256sum

__all__ = ["CheckpointError", "allow_mmengine_checkpoints", "fetch_checkpoint",
           "load_checkpoint_file", "save_model_checkpoint", "state_dict_of"]

HISTORY_BUFFER_METHODS = ("min", "max", "current", "mean")


def _history_buffer_getattr(obj: Any, name: str) -> Any:
    """The only `getattr` an MMEngine checkpoint needs: HistoryBuffer's statistics methods
    (pickled as `getattr(HistoryBuffer, 'mean')`). Anything else is refused."""
    from mmengine.logging.history_buffer import HistoryBuffer

    if obj is HistoryBuffer and name in HISTORY_BUFFER_METHODS:
        return getattr(HistoryBuffer, name)
    raise pickle.UnpicklingError(f"refusing getattr({obj!r}, {name!r}) in a checkpoint")


def mmengine_safe_globals() -> list[Any]:
    """What MMEngine 0.10 puts in its checkpoints beyond tensors and builtins (measured with
    `torch.serialization.get_unsafe_globals_in_checkpoint`), each under the name it is
    pickled with. numpy 2 pickles `numpy._core.*`, numpy 1 `numpy.core.*`."""
    import numpy as np
    from mmengine.logging.history_buffer import HistoryBuffer

    core = np._core.multiarray if hasattr(np, "_core") else np.core.multiarray
    allowed: list[Any] = [HistoryBuffer, np.ndarray, np.dtype,
                          (_history_buffer_getattr, "builtins.getattr")]
    for module in ("numpy._core.multiarray", "numpy.core.multiarray"):
        allowed += [(core._reconstruct, f"{module}._reconstruct"),
                    (core.scalar, f"{module}.scalar")]
    allowed += [type(np.dtype(t)) for t in (np.float64, np.float32, np.int64, np.int32,
                                            np.bool_, np.uint8)]
    return allowed


_ALLOWED = False


def allow_mmengine_checkpoints() -> None:
    """Lets MMEngine resume from its own checkpoints with torch's weights-only unpickler.

    Idempotent. MMEngine calls `torch.load(path)` without `weights_only`, which defaults to True
    since torch 2.6; resuming then fails on `HistoryBuffer` and numpy. We extend the allow-list
    with those classes only.
    """
    global _ALLOWED
    if not _ALLOWED:
        torch.serialization.add_safe_globals(mmengine_safe_globals())
        _ALLOWED = True


def load_checkpoint_file(path: str | Path) -> dict:
    """`torch.load` on CPU, weights only, with errors that name the file and say what to do.

    A checkpoint that would run pickled code (any global outside torch's weights-only set and
    `mmengine_safe_globals`) is refused before anything in it runs."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist; check the path, or run the "
                              "rule that makes it")
    if path.stat().st_size == 0:
        raise CheckpointError(f"checkpoint {path} is empty (0 bytes); delete it and download or "
                              "train it again")
    allow_mmengine_checkpoints()
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        found = re.search(r"GLOBAL ([\w.]+)", str(e))
        if found or "getattr" in str(e):
            what = found.group(1) if found else "getattr"
            raise CheckpointError(
                f"checkpoint {path} was refused: it would load the Python object {what}, not "
                "plain weights; nothing in it was run. Re-save its state_dict with trusted "
                "code, or use a checkpoint from a trusted source") from e
        raise CheckpointError(f"checkpoint {path} cannot be read (not a PyTorch checkpoint, or "
                              "truncated): delete it and run its rule again") from e
    except Exception as e:  # torch raises several types for truncated or foreign files
        reason = " ".join(str(e).split())[:200] or "no detail"
        raise CheckpointError(
            f"checkpoint {path} cannot be read ({type(e).__name__}: {reason}); it is truncated "
            "or not a PyTorch checkpoint: delete it and run its rule again") from e
    if not isinstance(ckpt, dict):
        raise CheckpointError(f"checkpoint {path} holds a {type(ckpt).__name__}, not a dict of "
                              "weights")
    return ckpt


def state_dict_of(ckpt: dict, path: str | Path) -> dict[str, torch.Tensor]:
    sd = ckpt.get("state_dict", ckpt)
    if not sd or not all(isinstance(v, torch.Tensor) for v in sd.values()):
        raise CheckpointError(f"checkpoint {path} has no state_dict of tensors")
    return sd


def load_weights(model: torch.nn.Module, path: str | Path, config: str,
                 ckpt: dict | None = None, allow_unexpected: bool = False) -> None:
    """Loads a checkpoint file's weights into `model`, built from `config`, or says why not.

    Tensors whose shapes differ mean a head for another number of classes or another
    architecture; missing tensors mean another architecture. Unexpected extra tensors are
    tolerated only with `allow_unexpected` (e.g. a teacher checkpoint that also holds an EMA).
    """
    sd = state_dict_of(ckpt if ckpt is not None else load_checkpoint_file(path), path)
    own = model.state_dict()
    shapes = [(k, tuple(v.shape), tuple(own[k].shape)) for k, v in sd.items()
              if k in own and own[k].shape != v.shape]
    if shapes:
        k, theirs, ours = shapes[0]
        raise CheckpointError(
            f"checkpoint {path} does not fit config {config}: {len(shapes)} tensors have other "
            f"shapes, e.g. {k} is {theirs} in the checkpoint but {ours} in the model (a head "
            "for another number of classes, or another architecture); give the config the "
            "checkpoint was trained with, and its classes")
    missing, unexpected = model.load_state_dict(sd, strict=False)
    if missing or (unexpected and not allow_unexpected):
        raise CheckpointError(
            f"checkpoint {path} does not fit config {config}: {len(missing)} tensors missing "
            f"(e.g. {missing[:3]}), {len(unexpected)} unexpected (e.g. {unexpected[:3]}); it "
            "was trained with another architecture: give the config it was trained with")


def save_model_checkpoint(path: str | Path, state_dict: dict[str, torch.Tensor],
                          meta: dict[str, Any]) -> None:
    """Writes `{"state_dict", "meta"}` atomically; tensors are detached copies on CPU."""
    sd = {k: v.detach().cpu().clone() for k, v in state_dict.items()}
    with atomic_path(path) as tmp:
        torch.save({"state_dict": sd, "meta": meta}, tmp)


def fetch_checkpoint(source: str, out: str | Path, sha256: str | None, *,
                     allow_http: bool = False, timeout: float = 60.0) -> Path:
    """Obtains a teacher checkpoint from a URL or local path, checks its sha256, and stores it.

    URLs must be HTTPS unless `allow_http`. `sha256` may be the whole hash or a prefix of at
    least 8 hex digits (MMDetection's zoo puts the first 8 in its file names); when given it is
    always checked. The download goes to a temporary file beside `out` and is only renamed into
    place after the hash matched and the file loaded safely, so a bad download never becomes a
    DAG target.
    """
    out = Path(out)
    parsed = urllib.parse.urlparse(source)
    if parsed.scheme not in ("", "file", "https") and not (allow_http and parsed.scheme == "http"):
        raise CheckpointError(f"refusing to download {source}: only https:// URLs (or local "
                              "paths) are fetched; set the teacher's checkpoint.allow_http: true "
                              "to allow this one")
    with atomic_path(out) as tmp:
        if parsed.scheme in ("http", "https"):
            try:
                with urllib.request.urlopen(source, timeout=timeout) as r, open(tmp, "wb") as f:
                    shutil.copyfileobj(r, f, 1 << 20)
            except OSError as e:
                raise CheckpointError(f"could not download {source}: {e}; check the URL and "
                                      "the network (or give a local path)") from e
        else:
            src = Path(parsed.path if parsed.scheme == "file" else source)
            if not src.is_file():
                raise CheckpointError(f"teacher checkpoint {src} does not exist; fix the "
                                      "teacher's checkpoint.source")
            shutil.copyfile(src, tmp)
        if sha256:
            got = sha256sum(tmp)
            if not got.startswith(sha256.lower()):
                raise CheckpointError(f"sha256 of {source} is {got}, which does not match the "
                                      f"config's {sha256}; fix the sha256 or the source")
        try:
            load_checkpoint_file(tmp)
        except CheckpointError as e:  # name what the user gave, not our temporary file
            raise CheckpointError(str(e).replace(str(tmp), source)) from e
    return out
