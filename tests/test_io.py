"""Atomic outputs (mtpd/io.py): a job killed while writing leaves the previous file whole."""
from __future__ import annotations

import json
import random
import subprocess
import sys
import time

import pytest

from tests.helpers import random_checkpoint

RETINA = "mtpd::shapes/retinanet_r18w16_shapes.py"


@pytest.mark.parametrize("command", ["evaluate", "tables"])
def test_killed_while_writing_leaves_previous_outputs_intact(tmp_path, shapes_data, command):
    """Outputs are written atomically: a job killed at any moment leaves the previous file
    whole (old or new, never half-written)."""
    if command == "evaluate":
        ckpt = random_checkpoint(RETINA, shapes_data, tmp_path / "m.pth")
        out = tmp_path / "metrics_val.json"
        args = ["evaluate", "--config", RETINA, "--checkpoint", str(ckpt), "--dataset",
                str(shapes_data), "--split", "val", "--out", str(out), "--num-workers", "0"]
    else:
        out = tmp_path / "record.json"
        args = ["record", "--out", str(out), "--json", json.dumps({"x": list(range(20000))})]
    out.write_text('{"previous": true}\n')
    rng = random.Random(0)
    for _ in range(6):
        proc = subprocess.Popen([sys.executable, "-m", "mtpd", *args],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(rng.uniform(0.5, 6.0))
        proc.kill()
        proc.wait()
        json.loads(out.read_text())  # always a whole JSON document
    assert not list(tmp_path.glob(".*.tmp"))
