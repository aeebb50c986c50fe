"""Checkpoints (mtpd/checkpoint.py): hostile files refused through every entry point, weights
that do not fit their config, and fetching with sha256 checks (a path, file://, and a plain
HTTP server standing in for the model zoo)."""
from __future__ import annotations

import functools
import http.server
import json
import os
import threading

import pytest
import torch

from mtpd.checkpoint import fetch_checkpoint, load_checkpoint_file, save_model_checkpoint
from mtpd.data.manifest import DatasetManifest
from mtpd.errors import CheckpointError
from mtpd.io import sha256sum
from tests.helpers import one_line_error, random_checkpoint, run_mtpd

RETINA = "mtpd::shapes/retinanet_r18w16_shapes.py"
TEACHER = "mtpd::shapes/retinanet_r34w24_shapes.py"


# --- hostile and unfitting files: nothing runs, one line says why -----------------------------
class Evil:
    """Stands for any class a checkpoint might smuggle in."""


class Sneaky:
    """Pickles as getattr(HistoryBuffer, '__init__'): the allowed getattr must refuse it."""

    def __reduce__(self):
        from mmengine.logging.history_buffer import HistoryBuffer

        return (getattr, (HistoryBuffer, "__init__"))


def test_unsafe_checkpoint_refused(tmp_path):
    path = tmp_path / "evil.pth"
    torch.save({"state_dict": {}, "payload": Evil()}, path)
    with pytest.raises(CheckpointError, match="evil.pth was refused"):
        load_checkpoint_file(path)
    # the getattr allowed for MMEngine's HistoryBuffer resolves nothing else
    torch.save({"state_dict": {}, "payload": Sneaky()}, path)
    with pytest.raises(CheckpointError, match="evil.pth was refused"):
        load_checkpoint_file(path)
    torch.save({"state_dict": {}, "payload": os.system}, path)
    with pytest.raises(CheckpointError, match="evil.pth was refused"):
        load_checkpoint_file(path)
    path.write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="evil.pth cannot be read"):
        load_checkpoint_file(path)


class RunsCode:
    """Unpickling this would run a shell command (it never must)."""

    marker = ""

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


@pytest.mark.parametrize("entry", ["fetch", "teacher", "init", "evaluate", "resume"])
def test_crafted_checkpoint_runs_nothing_through_any_entry_point(tmp_path, shapes_data, entry):
    marker = tmp_path / "PWNED"
    RunsCode.marker = str(marker)
    evil = tmp_path / "evil.pth"
    torch.save({"state_dict": {"w": torch.ones(1)}, "meta": RunsCode()}, evil)
    common = ["--config", RETINA, "--dataset", str(shapes_data), "--num-workers", "0"]
    train = ["train", *common, "--out", str(tmp_path / "s.pth"), "--epochs", "1", "--seed", "0"]
    if entry == "fetch":
        r = run_mtpd("fetch", "--source", str(evil), "--out", str(tmp_path / "t.pth"))
    elif entry == "teacher":
        r = run_mtpd(*train, "--distill", json.dumps({"teacher_config": RETINA,
                                                  "teacher_checkpoint": str(evil)}))
    elif entry == "init":
        r = run_mtpd(*train, "--init", str(evil))
    elif entry == "evaluate":
        r = run_mtpd("evaluate", *common, "--checkpoint", str(evil), "--split", "val", "--out",
                 str(tmp_path / "m.json"))
    else:  # a work directory whose last checkpoint was swapped for a hostile file
        work = tmp_path / "s.pth.work"
        work.mkdir()
        (work / "last_checkpoint").write_text(str(evil))
        r = run_mtpd(*train)
    assert r.returncode != 0
    assert "evil.pth" in r.stderr and ("refused" in r.stderr or "Weights only" in r.stderr)
    assert not marker.exists(), "a checkpoint ran code"


def test_teacher_of_another_architecture_or_classes(tmp_path, shapes_data):
    """A teacher checkpoint that does not fit its config: the message says which tensors and
    why (another number of classes, another architecture)."""
    other = random_checkpoint(TEACHER, shapes_data, tmp_path / "r34.pth")
    r = run_mtpd("evaluate", "--config", RETINA, "--checkpoint", str(other), "--dataset",
             str(shapes_data), "--split", "val", "--out", str(tmp_path / "m.json"))
    one_line_error(r, "r34.pth does not fit config", "give the config the checkpoint was")
    from mmdet.registry import MODELS

    from mtpd.model_config import build_job_config

    cfg = build_job_config(RETINA, DatasetManifest.load(shapes_data))
    cfg.model.bbox_head.num_classes = 80
    coco_head = tmp_path / "coco_head.pth"
    save_model_checkpoint(coco_head, MODELS.build(cfg.model).state_dict(), {})
    r = run_mtpd("train", "--config", RETINA, "--dataset", str(shapes_data), "--out",
             str(tmp_path / "s.pth"), "--epochs", "1", "--seed", "0", "--num-workers", "0",
             "--distill", json.dumps({"teacher_config": RETINA,
                                      "teacher_checkpoint": str(coco_head)}))
    one_line_error(r, "coco_head.pth does not fit", "another number of classes")
    assert not (tmp_path / "s.pth").exists()


# --- fetching: sha256 verified before use, nothing bad kept, https only -----------------------
def test_fetch_checks_sha256_and_keeps_nothing_bad(tmp_path):
    src = tmp_path / "zoo.pth"
    save_model_checkpoint(src, {"w": torch.ones(2)}, {"from": "zoo"})
    digest = sha256sum(src)
    out = tmp_path / "t" / "model.pth"
    with pytest.raises(CheckpointError, match="sha256 of .* is"):
        fetch_checkpoint(str(src), out, "0" * 64)
    assert not out.exists() and not list(out.parent.iterdir())
    fetch_checkpoint(f"file://{src}", out, digest)
    assert torch.equal(load_checkpoint_file(out)["state_dict"]["w"], torch.ones(2))


def test_missing_teacher_checkpoint_and_sha256_mismatch(tmp_path):
    r = run_mtpd("fetch", "--source", str(tmp_path / "nope.pth"), "--out", str(tmp_path / "t.pth"))
    one_line_error(r, "nope.pth does not exist", "checkpoint.source")
    src = tmp_path / "zoo.pth"
    save_model_checkpoint(src, {"w": torch.ones(1)}, {})
    r = run_mtpd("fetch", "--source", str(src), "--sha256", "0" * 64, "--out",
             str(tmp_path / "t.pth"))
    one_line_error(r, "does not match the config's 0000")
    assert not (tmp_path / "t.pth").exists()


@pytest.fixture()
def http_server(tmp_path):
    """A plain HTTP server on loopback serving tmp_path/www (stands in for the model zoo)."""
    root = tmp_path / "www"
    root.mkdir()
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(root))
    handler.log_message = lambda *a: None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield root, f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def test_fetch_from_a_server_verifies_before_use(tmp_path, http_server):
    root, url = http_server
    good = root / "teacher_20200130-xxxxxxxx.pth"
    save_model_checkpoint(good, {"w": torch.arange(4.0)}, {"zoo": True})
    digest = sha256sum(good)
    out = tmp_path / "teachers" / "t" / "model.pth"
    with pytest.raises(CheckpointError, match="only https:// URLs"):
        fetch_checkpoint(f"{url}/{good.name}", out, digest[:8])
    assert not out.exists()
    fetch_checkpoint(f"{url}/{good.name}", out, digest[:8], allow_http=True)  # zoo-style prefix
    assert torch.equal(load_checkpoint_file(out)["state_dict"]["w"], torch.arange(4.0))
    out.unlink()
    with pytest.raises(CheckpointError, match="does not match the config's 00000000"):
        fetch_checkpoint(f"{url}/{good.name}", out, "00000000", allow_http=True)
    with pytest.raises(CheckpointError, match="could not download"):
        fetch_checkpoint(f"{url}/missing.pth", out, None, allow_http=True)
    (root / "empty.pth").write_bytes(b"")
    with pytest.raises(CheckpointError, match="empty.pth is empty"):
        fetch_checkpoint(f"{url}/empty.pth", out, None, allow_http=True)
    (root / "cut.pth").write_bytes(good.read_bytes()[:200])
    with pytest.raises(CheckpointError, match=r"cut.pth cannot be read .* truncated"):
        fetch_checkpoint(f"{url}/cut.pth", out, None, allow_http=True)
    assert not out.exists() and not list(out.parent.glob("*.tmp"))
