"""Atomic file output: a killed job never leaves a half-written target behind.

Snakemake treats an existing output as done, so every target is written to a temporary name in
the same directory and renamed into place (rename is atomic on POSIX within a file system).
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yields a temporary file path beside `path`; renames it onto `path` if the block succeeds."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        os.replace(tmp_path, path)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


def atomic_write_text(path: str | Path, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def atomic_write_json(path: str | Path, obj: Any) -> None:
    atomic_write_text(path, json.dumps(obj, indent=1, sort_keys=False) + "\n")


def atomic_write_with(path: str | Path, writer: Callable[[Path], None]) -> None:
    """Calls `writer(tmp_path)` and moves the result onto `path` (for pandas, matplotlib, torch)."""
    with atomic_path(path) as tmp:
        writer(tmp)


@contextlib.contextmanager
def atomic_dir(path: str | Path) -> Iterator[Path]:
    """Builds a directory under a temporary name and swaps it into place when the block succeeds.

    An existing directory at `path` is only removed after the new one is complete.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent))
    try:
        yield tmp
        old = None
        if path.exists():
            old = path.with_name(f".{path.name}.old-{os.getpid()}")
            os.replace(path, old)
        os.replace(tmp, path)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def read_json_file(path: str | Path, what: str, error: type[Exception], missing_fix: str) -> Any:
    """The JSON value in `path`, or `error` with one line naming `what` and the path: missing
    (with `missing_fix`), unreadable, or not valid JSON."""
    path = Path(path)
    try:
        text = path.read_text()
    except FileNotFoundError as e:
        raise error(f"{what} {path} does not exist; {missing_fix}") from e
    except OSError as e:
        raise error(f"cannot read {what} {path} ({e.strerror}); check its permissions") from e
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        raise error(f"{what} {path} is not valid JSON ({e}); fix or re-create it") from e


def sha256sum(path: str | Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(chunk), b""):
            h.update(block)
    return h.hexdigest()
