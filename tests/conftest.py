"""Shared fixtures: a small generated dataset, made once per test session."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
os.environ.setdefault("OMP_NUM_THREADS", "2")


@pytest.fixture(scope="session")
def shapes_data(tmp_path_factory) -> Path:
    """40 train / 12 proxy / 12 val images of 128 px; returns the manifest path."""
    from mtpd.data.shapes import ShapesSpec, generate

    out = tmp_path_factory.mktemp("data") / "shapes"
    generate(out, ShapesSpec.from_settings(num_train=40, num_proxy=12, num_val=12, seed=3))
    return out / "dataset.json"
