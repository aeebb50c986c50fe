"""The training hooks (mtpd/hooks.py): a diverging run stops at the first non-finite loss."""
from __future__ import annotations

import torch

from mtpd.checkpoint import load_checkpoint_file
from tests.helpers import REPO, one_line_error, run_mtpd


def test_nan_loss_stops_and_keeps_the_last_good_checkpoint(tmp_path, shapes_data):
    """A diverging run stops at the first non-finite loss, naming the term and the iteration;
    no NaN weights are ever saved, and no target is written."""
    config = tmp_path / "diverge.py"
    config.write_text(f"_base_ = '{REPO}/mtpd/configs/shapes/retinanet_r18w16_shapes.py'\n"
                      "optim_wrapper = dict(optimizer=dict(lr=1e6), clip_grad=None)\n"
                      "param_scheduler = []\n")
    out = tmp_path / "model.pth"
    r = run_mtpd("train", "--config", str(config), "--dataset", str(shapes_data), "--out",
             str(out), "--epochs", "3", "--batch-size", "4", "--num-workers", "0", "--seed", "0",
             "--checkpoint-minutes", "0.0001")
    line = one_line_error(r, "loss term '", "at iteration", "last good checkpoint")
    assert any(v in line for v in ("is nan", "is inf", "is -inf"))
    assert not out.exists()
    work = tmp_path / "model.pth.work"
    if (work / "last_checkpoint").exists():  # diverged after at least one saved iteration
        sd = load_checkpoint_file((work / "last_checkpoint").read_text().strip())["state_dict"]
        assert all(torch.isfinite(v).all() for v in sd.values() if v.is_floating_point())
