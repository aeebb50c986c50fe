"""What a network costs: FLOPs and parameters against a hand count, the network plan, and one
interleaved timing per network that every checkpoint of it streams with (mtpd/cost.py)."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from mtpd.cost import (
    EVAL_INPUT,
    STUDENT,
    Input,
    Network,
    complexity,
    latency_stats,
    measure,
    network_for,
    plan_inputs,
    plan_networks,
    stream_input,
    stream_runtimes,
    teacher_member,
)
from mtpd.errors import MtpdError
from tests.helpers import random_checkpoint

STUDENT_CONFIG = "mtpd::shapes/retinanet_r18w16_shapes.py"
TEACHER_CONFIG = "mtpd::shapes/retinanet_r34w24_shapes.py"
MASK_CONFIG = "mtpd::shapes/mask_rcnn_r18w16_shapes.py"


def test_complexity_matches_a_hand_count():
    """One multiply-add is one FLOP; biases and activations are not counted."""
    import torch

    net = torch.nn.Sequential(
        torch.nn.Conv2d(3, 4, 3, padding=1),            # 8*8 outputs x 4 ch x 3*3*3 MACs
        torch.nn.ReLU(),
        torch.nn.Conv2d(4, 8, 3, stride=2, padding=1, groups=2),  # 4*4 x 8 x (2*3*3)
        torch.nn.Flatten(),
        torch.nn.Linear(8 * 4 * 4, 5))                  # 128 x 5
    found = complexity(net, (torch.zeros(1, 3, 8, 8),))
    assert found["flops"] == 8 * 8 * 4 * 27 + 4 * 4 * 8 * 18 + 128 * 5
    assert found["params"] == (4 * 27 + 4) + (8 * 18 + 8) + (128 * 5 + 5)
    assert found["uncounted_ops"] == {}


def test_networks_are_shared_by_config_and_classes():
    teachers = {"long": {"config": STUDENT_CONFIG}, "big_a": {"config": TEACHER_CONFIG},
                "big_b": {"config": TEACHER_CONFIG},
                "zoo": {"config": TEACHER_CONFIG, "classes": "coco"}}
    nets = plan_networks({"name": "stu", "config": STUDENT_CONFIG}, "s.pth", teachers,
                         lambda t: f"{t}.pth")
    assert [(n.name, n.checkpoint, n.members) for n in nets] == [
        ("retinanet_r18w16_shapes", "s.pth", (STUDENT, "teacher:long")),
        ("retinanet_r34w24_shapes", "big_a.pth", ("teacher:big_a", "teacher:big_b")),
        ("retinanet_r34w24_shapes+coco", "zoo.pth", ("teacher:zoo",))]
    assert network_for(nets, teacher_member("big_b")) == "retinanet_r34w24_shapes"


def test_latency_stats():
    stats = latency_stats([[0.010, 0.020, 0.030], [0.012, 0.022, 0.032]])
    assert stats["median"] == 21.0 and stats["mean"] == 21.0
    assert stats["p90"] == pytest.approx(31.0, abs=1e-3)  # 30 + 0.5 * (32 - 30)
    assert stats["round_median_sd"] == pytest.approx(1.414, abs=1e-3)  # medians 20, 22


# --- a real measurement: two random-initialised RetinaNets on generated sequences ------------
@pytest.fixture(scope="module")
def two_networks(tmp_path_factory) -> tuple[Path, list[Network]]:
    from mtpd.data.sequences import SequencesSpec, generate_sequences

    root = tmp_path_factory.mktemp("cost")
    spec = SequencesSpec.from_settings(num_train=1, num_proxy=0, num_val=2, frames=4, seed=2)
    manifest = generate_sequences(root / "seq", spec) / "dataset.json"
    networks = []
    for name, config in (("student", STUDENT_CONFIG), ("teacher", TEACHER_CONFIG),
                         ("mask", MASK_CONFIG)):
        random_checkpoint(config, manifest, root / f"{name}.pth", {"note": "random"},
                          test_split="val")
        networks.append(Network(name, config, str(root / f"{name}.pth"),
                                members=(STUDENT,) if name == "student" else (f"teacher:{name}",)))
    return manifest, networks


def test_measure_times_every_network_interleaved(two_networks, tmp_path):
    manifest, networks = two_networks
    inputs = plan_inputs(str(manifest), "val", str(manifest), "val", [0.5])
    assert inputs[1] == Input(stream_input(0.5), str(manifest), "val", (160, 100))
    out = tmp_path / "cost.json"
    rec = measure(networks[:2], inputs, out, rounds=2, images=3, warmup=1)
    assert json.loads(out.read_text()) == rec and rec["device"].startswith("cpu")
    student, teacher = rec["networks"]["student"], rec["networks"]["teacher"]
    for net in (student, teacher):
        assert set(net["inputs"]) == {EVAL_INPUT, "stream_s0.5"}
        for inp in net["inputs"].values():
            assert len(inp["runtimes_s"]) == 2 * 3 and inp["latency_ms"]["median"] > 0
    # the evaluation input is the config's own test scale (128 px, aspect kept); the
    # streaming one half the 320x200 frames
    assert student["inputs"]["stream_s0.5"]["input_size"] == [160, 100]
    assert student["inputs"][EVAL_INPUT]["input_size"] == [128, 80]
    # a wider, deeper network costs more; FLOPs grow with the padded tensor's area
    assert teacher["params_M"] > student["params_M"] > 0
    assert teacher["inputs"][EVAL_INPUT]["gflops"] > student["inputs"][EVAL_INPUT]["gflops"]
    ev, st = student["inputs"][EVAL_INPUT], student["inputs"]["stream_s0.5"]
    area = (ev["tensor_size"][0] * ev["tensor_size"][1]) / (st["tensor_size"][0]
                                                            * st["tensor_size"][1])
    assert ev["gflops"] / st["gflops"] == pytest.approx(area, rel=0.1)
    runtimes, device = stream_runtimes(out, "student", 0.5)
    assert runtimes == student["inputs"]["stream_s0.5"]["runtimes_s"] and device == rec["device"]
    with pytest.raises(MtpdError, match="no network 'other'"):
        stream_runtimes(out, "other", 0.5)
    with pytest.raises(MtpdError, match="at no streaming scale 1.0"):
        stream_runtimes(out, "student", 1.0)


def test_a_two_stage_network_is_counted_too(two_networks, tmp_path):
    """Mask R-CNN's second stage needs the image's metadata: it is bound to the traced forward,
    so FLOPs cover RPN, box and mask heads (on this image's proposals)."""
    manifest, networks = two_networks
    rec = measure(networks[2:], plan_inputs(str(manifest), "val"), tmp_path / "cost.json",
                  rounds=1, images=1, warmup=0)
    mask = rec["networks"]["mask"]
    assert mask["inputs"][EVAL_INPUT]["gflops"] > 0 and mask["params_M"] > 0


def test_every_checkpoint_of_a_network_streams_with_its_one_timing(two_networks, tmp_path):
    """Streamed twice, a network gets the same simulated runtimes from its one timing, whatever
    each run's own timed pass measured (timing noise no longer decides sAP)."""
    from mtpd.streaming import run_streaming

    manifest, networks = two_networks
    cost = tmp_path / "cost.json"
    measure(networks[:1], plan_inputs(str(manifest), "val", str(manifest), "val", [0.5]), cost,
            rounds=1, images=2, warmup=0)
    runtimes, device = stream_runtimes(cost, "student", 0.5)
    records = [run_streaming(STUDENT_CONFIG, networks[0].checkpoint, manifest, "val",
                             tmp_path / f"{i}.json", scale=0.5, latency=runtimes,
                             latency_device=device, latency_network="student")
               for i in range(2)]
    assert records[0]["runtime_ms"] == records[1]["runtime_ms"]
    assert records[0]["processed_frames"] == records[1]["processed_frames"]
    assert records[0]["latency"]["network"] == "student"
    assert records[0]["latency"]["source"] == "drawn" and records[0]["latency"]["device"] == device
