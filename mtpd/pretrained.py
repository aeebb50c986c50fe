"""Where a model config's pretrained weights come from, without torchvision and without a download.

Zoo configs start their backbones from `init_cfg=dict(type='Pretrained', checkpoint=...)`.
MMEngine's loader for `torchvision://` (and its old alias `modelzoo://`) imports torchvision
only to read the name -> URL table that MMEngine itself ships as
`mmengine/hub/torchvision_0.12.json`; torchvision is not installed here (PyPI's build does not
import against our torch), so `init_weights()` of the COCO students failed in their first
training job. `register_schemes()` (run by `mtpd.register_all_modules`) replaces that loader:
it looks the name up in MMEngine's table and hands the URL to MMEngine's own `load_from_http`,
so download and caching stay torch.hub's (under `$TORCH_HOME/hub/checkpoints`). torch.hub is
called without `check_hash`, so the hash prefix in a file name is not verified, as before.
`open-mmlab://` and `mmcls://` names resolve through MMEngine's JSON tables without torchvision.

Behind a proxy, or with an internal mirror of download.pytorch.org, set
`MTPD_TORCHVISION_MIRROR` to the mirror's base URL: `torchvision://resnet50` is then fetched
from `<mirror>/models/resnet50-0676ba61.pth` (the same path as on the original host).

`resolve()` says where one checkpoint string comes from without fetching it, and raises a one-line
ModelConfigError naming the config, the key and the fix; `pretrained_checkpoints()` lists a
model config's checkpoint strings by key. No torch import at module level.
"""
from __future__ import annotations

import difflib
import json
import os
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from mtpd.errors import ModelConfigError

MIRROR_ENV = "MTPD_TORCHVISION_MIRROR"
TORCHVISION_PREFIXES = ("torchvision://", "modelzoo://")
OPENMMLAB_PREFIXES = ("open-mmlab://", "openmmlab://")
MMCLS_PREFIX = "mmcls://"
HTTP_PREFIXES = ("http://", "https://")
PRETRAINED_TYPES = ("Pretrained", "PretrainedInit")
TORCHVISION_TABLE = "torchvision_0.12.json"
FIX = "give a name from that table, an https:// URL or a local file"


@dataclass(frozen=True)
class Weights:
    """Where one checkpoint string comes from: `url` for a download, `path` for a file."""

    checkpoint: str
    scheme: str  # torchvision | open-mmlab | mmcls | http | local
    url: str | None = None
    path: str | None = None


def _hub(name: str) -> Path:
    """A name -> URL table that MMEngine ships (mmengine/hub/)."""
    import mmengine

    return Path(mmengine.__file__).parent / "hub" / name


@lru_cache(maxsize=1)
def _torchvision_urls() -> dict[str, str]:
    """MMEngine's own torchvision table (what its torchvision loader reads before adding the
    names of torchvision >= 0.13, which only torchvision itself can list)."""
    return json.loads(_hub(TORCHVISION_TABLE).read_text())


def _unknown(checkpoint: str, name: str, known: dict[str, Any], table: str) -> str:
    close = difflib.get_close_matches(name, list(known), n=1)
    hint = f" (did you mean '{checkpoint[:-len(name)]}{close[0]}'?)" if close else ""
    return (f"{checkpoint!r} is not a name in {table}{hint}; {FIX}")


def _mirrored(url: str) -> str:
    """The URL as fetched: on the mirror of `MTPD_TORCHVISION_MIRROR`, if set, same path."""
    base = os.environ.get(MIRROR_ENV, "").strip()
    return base.rstrip("/") + urlsplit(url).path if base else url


def torchvision_url(checkpoint: str) -> str:
    """The URL of `torchvision://<name>` (or `modelzoo://<name>`), from MMEngine's table."""
    prefix = next(p for p in TORCHVISION_PREFIXES if checkpoint.startswith(p))
    name = checkpoint[len(prefix):]
    urls = _torchvision_urls()
    if name not in urls:
        raise ModelConfigError(_unknown(checkpoint, name, urls, str(_hub(TORCHVISION_TABLE))))
    return _mirrored(urls[name])


def load_from_torchvision(filename: str, map_location: Any = None) -> Any:
    """MMEngine's loader for `torchvision://`, without torchvision (see module docstring)."""
    from mmengine.runner.checkpoint import load_from_http

    return load_from_http(torchvision_url(filename), map_location=map_location)


def register_schemes() -> None:
    """Makes MMEngine load `torchvision://` and `modelzoo://` names with
    `load_from_torchvision`; idempotent."""
    from mmengine.runner.checkpoint import CheckpointLoader

    CheckpointLoader.register_scheme(TORCHVISION_PREFIXES, load_from_torchvision, force=True)


def _openmmlab(checkpoint: str) -> Weights:
    """As MMEngine's `load_from_openmmlab` resolves it: its table plus $MMENGINE_HOME's
    open_mmlab.json, deprecated names renamed; a relative entry is a file in $MMENGINE_HOME."""
    from mmengine.runner.checkpoint import (
        _get_mmengine_home,
        get_deprecated_model_names,
        get_external_models,
    )

    prefix = next(p for p in OPENMMLAB_PREFIXES if checkpoint.startswith(p))
    name = checkpoint[len(prefix):]
    urls = get_external_models()
    name = get_deprecated_model_names().get(name, name)
    if name not in urls:
        raise ModelConfigError(_unknown(checkpoint, name, urls, str(_hub("openmmlab.json"))))
    url = urls[name]
    if url.startswith(HTTP_PREFIXES):
        return Weights(checkpoint, "open-mmlab", url=url)
    path = Path(_get_mmengine_home()) / url
    if not path.is_file():
        raise ModelConfigError(f"{checkpoint!r} names the file {path}, which does not exist; "
                               "put the file there or give another checkpoint")
    return Weights(checkpoint, "open-mmlab", path=str(path))


def _mmcls(checkpoint: str) -> Weights:
    from mmengine.runner.checkpoint import get_mmcls_models

    name = checkpoint[len(MMCLS_PREFIX):]
    urls = get_mmcls_models()
    if name not in urls:
        raise ModelConfigError(_unknown(checkpoint, name, urls, str(_hub("mmcls.json"))))
    return Weights(checkpoint, "mmcls", url=urls[name])


def resolve(checkpoint: str, where: str) -> Weights:
    """Where `checkpoint` comes from, checked without downloading it.

    `where` names the config and key for the message, e.g. "model config x.py:
    model.backbone.init_cfg.checkpoint". Raises ModelConfigError (one line) for an unknown
    torchvision / open-mmlab / mmcls name, a missing local file or a scheme mtpd cannot load.
    """
    try:
        if not isinstance(checkpoint, str) or not checkpoint:
            raise ModelConfigError(f"{checkpoint!r} is not a checkpoint; {FIX}")
        if checkpoint.startswith(TORCHVISION_PREFIXES):
            return Weights(checkpoint, "torchvision", url=torchvision_url(checkpoint))
        if checkpoint.startswith(OPENMMLAB_PREFIXES):
            return _openmmlab(checkpoint)
        if checkpoint.startswith(MMCLS_PREFIX):
            return _mmcls(checkpoint)
        if checkpoint.startswith(HTTP_PREFIXES):
            return Weights(checkpoint, "http", url=checkpoint)
        if "://" in checkpoint:  # pavi://, s3://, petrel://: clients mtpd does not install
            raise ModelConfigError(
                f"{checkpoint!r} uses '{checkpoint.split('://')[0]}://', which mtpd does not "
                "load (it loads torchvision://, open-mmlab://, mmcls://, http(s):// and local "
                "files); download the file and give its path")
        path = Path(checkpoint).expanduser()
        if not path.is_file():
            raise ModelConfigError(f"{checkpoint!r} is no file here (looked at "
                                   f"{path.resolve()}); fix the path, or give a URL or a "
                                   "torchvision:// name")
        return Weights(checkpoint, "local", path=str(path))
    except ModelConfigError as e:
        raise ModelConfigError(f"{where} {e}") from None


def pretrained_checkpoints(model_cfg: Any, key: str = "model") -> list[tuple[str, str]]:
    """Every checkpoint a model config initialises weights from, as (key, checkpoint):
    `init_cfg` of type Pretrained at any depth (a dict or a list of them) and the older
    `pretrained=` argument of backbones."""
    found: list[tuple[str, str]] = []
    if isinstance(model_cfg, dict):
        for k, v in model_cfg.items():
            where = f"{key}.{k}"
            if k == "init_cfg":
                inits = v if isinstance(v, (list, tuple)) else [v]
                for i, init in enumerate(inits):
                    if isinstance(init, dict) and init.get("type") in PRETRAINED_TYPES:
                        at = f"{where}[{i}]" if isinstance(v, (list, tuple)) else where
                        found.append((f"{at}.checkpoint", init.get("checkpoint")))
            elif k == "pretrained" and isinstance(v, str) and v:
                found.append((where, v))
            else:
                found += pretrained_checkpoints(v, where)
    elif isinstance(model_cfg, (list, tuple)):
        for i, v in enumerate(model_cfg):
            found += pretrained_checkpoints(v, f"{key}[{i}]")
    return found
