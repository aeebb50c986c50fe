"""Shared fixtures: a small generated dataset and the whole tiny DAG, each made once per test
session (for every file and folder under tests/). Helpers are in tests/helpers.py."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.helpers import snakemake, workdir

os.environ.setdefault("OMP_NUM_THREADS", "2")


@pytest.fixture(scope="session")
def shapes_data(tmp_path_factory) -> Path:
    """40 train / 12 proxy / 12 val images of 128 px; returns the manifest path."""
    from mtpd.data.shapes import ShapesSpec, generate

    out = tmp_path_factory.mktemp("data") / "shapes"
    generate(out, ShapesSpec.from_settings(num_train=40, num_proxy=12, num_val=12, seed=3))
    return out / "dataset.json"


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory) -> Path:
    """The whole tiny DAG (BGS over three candidates with exhaustive search), run once with
    `--cores 2`; returns its work directory (results/ inside)."""
    wd = workdir(tmp_path_factory.mktemp("tiny"))
    r = snakemake(wd, "--configfile", "config/tiny.yaml")
    assert r.returncode == 0, (r.stdout + r.stderr)[-5000:]
    return wd


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The end-to-end runs (tests/e2e/) last, so that the module tests report first."""
    e2e = Path(__file__).parent / "e2e"
    items.sort(key=lambda item: e2e in item.path.parents)
