"""Streaming AP: the simulation checked by hand, sAP on planted detections, and a real run."""
from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from mtpd.data.sequences import SequencesSpec, generate_sequences
from mtpd.errors import MtpdError
from mtpd.streaming import (
    Output,
    draw_runtimes,
    latency_source,
    match,
    parse_latency,
    replay,
    runtimes_for,
    sequences_of,
    simulate,
    streaming_ap,
)
from mtpd.tables import sweep_table
from tests.helpers import random_checkpoint

FPS = 30.0
DEVICE = re.compile(r"^(cpu: .+ \(\d+ threads\)|cuda: .+)$")


def _frames(outputs: list[Output]) -> list[int]:
    return [o.frame for o in outputs]


def test_zero_runtime_answers_every_frame_itself():
    outputs = simulate(5, [0.0] * 5, FPS)
    assert _frames(outputs) == [0, 1, 2, 3, 4]
    assert [o.finish for o in outputs] == [i / FPS for i in range(5)]
    assert match(5, outputs, FPS) == [0, 1, 2, 3, 4]


def test_faster_than_frame_rate_lags_one_frame():
    outputs = simulate(6, [0.010] * 6, FPS)  # 10 ms < 33.3 ms: nothing skipped
    assert _frames(outputs) == [0, 1, 2, 3, 4, 5]
    assert outputs[2].start == pytest.approx(2 / FPS)  # waits for frame 2 to arrive
    assert match(6, outputs, FPS) == [None, 0, 1, 2, 3, 4]


def test_slower_than_frame_rate_skips_frames():
    # 50 ms a frame. Starts (s) and frames: 0 -> f0, .05 -> f1 (arrived .033), .10 -> f3 (f2
    # skipped; f3 arrives at exactly .10), .15 -> f4, .20 -> f6, .25 -> f7, .30 -> f9.
    outputs = simulate(10, [0.050] * 10, FPS)
    assert _frames(outputs) == [0, 1, 3, 4, 6, 7, 9]
    assert [o.finish for o in outputs] == pytest.approx([.05, .10, .15, .20, .25, .30, .35])
    # Frame i at i/30 s takes the latest output finished by then (inclusive: f1's output at
    # .10 answers frame 3, f4's at .20 frame 6, f7's at .30 frame 9).
    assert match(10, outputs, FPS) == [None, None, 0, 1, 1, 3, 4, 4, 6, 7]


def test_uneven_runtimes_and_idle_wait():
    # f0 takes 100 ms (f1, f2 skipped), f3 takes 1 ms, then the detector idles until f4 arrives.
    runtimes = [0.1, 0.5, 0.5, 0.001, 0.2, 0.5, 0.5, 0.5]
    outputs = simulate(8, runtimes, FPS)
    assert _frames(outputs) == [0, 3, 4, 7]
    assert outputs[2].start == pytest.approx(4 / FPS)
    assert match(8, outputs, FPS) == [None, None, None, 0, 3, 3, 3, 3]


def test_replay_restarts_every_sequence():
    # 50 ms: 3 frames -> f0, f1, then f2 (the newest at .10); 4 frames -> f0, f1, f3.
    matched, counts, processed = replay([[10, 11, 12], [20, 21, 22, 23]],
                                        [[0.05] * 3, [0.05] * 4], FPS)
    assert processed == [[0, 1, 2], [0, 1, 3]]
    assert matched == {10: None, 11: None, 12: 10, 20: None, 21: None, 22: 20, 23: 21}
    assert counts == {"sequences": 2, "frames": 7, "frames_processed": 6, "frames_skipped": 1,
                      "frames_without_output": 4}


def test_drawn_runtimes_seeded_and_scaled():
    dist = [0.010, 0.050, 0.100]
    a = draw_runtimes(dist, 50, seed=3)
    assert a == draw_runtimes(dist, 50, seed=3)
    assert a != draw_runtimes(dist, 50, seed=4)
    assert set(a) <= set(dist) and len(set(a)) == 3
    assert draw_runtimes(dist, 50, seed=3, perf_factor=2.0) == [v / 2 for v in a]
    seq0 = runtimes_for(dist, [0.0] * 20, seed=1, sequence=0)
    assert seq0 == runtimes_for(dist, [0.0] * 20, seed=1, sequence=0)
    assert seq0 != runtimes_for(dist, [0.0] * 20, seed=1, sequence=1)
    assert runtimes_for(0.04, [1.0] * 3, perf_factor=4.0) == [0.01] * 3
    assert runtimes_for("measured", [0.02, 0.04], perf_factor=2.0) == [0.01, 0.02]


def test_latency_parsing_and_errors(tmp_path):
    assert latency_source("measured") == "measured"
    assert latency_source(0.05) == "given"
    assert latency_source([0.01, 0.02]) == "drawn"
    for bad in ("fast", -0.1, [], [0.1, -1]):
        with pytest.raises(MtpdError):
            latency_source(bad)
    with pytest.raises(MtpdError, match="perf_factor"):
        runtimes_for(0.1, [0.0], perf_factor=0)
    assert parse_latency("0.05") == (0.05, None)
    rec = tmp_path / "rec.json"
    rec.write_text(json.dumps({"measured_runtimes_s": [0.1, 0.2], "device": "cuda: X"}))
    assert parse_latency(str(rec)) == ([0.1, 0.2], "cuda: X")
    with pytest.raises(MtpdError, match="neither"):
        parse_latency(str(tmp_path / "missing.json"))


# --- sAP on planted detections ----------------------------------------------------------------
def _sequences(root: Path, max_speed: float) -> Path:
    spec = SequencesSpec.from_settings(num_train=1, num_proxy=0, num_val=2, frames=10,
                                       min_objects=2, max_objects=4, max_speed=max_speed,
                                       still_prob=0.0, seed=11)
    return generate_sequences(root, spec) / "val.coco.json"


@pytest.fixture(scope="module")
def moving(tmp_path_factory) -> Path:
    return _sequences(tmp_path_factory.mktemp("moving") / "seq", max_speed=8.0)


@pytest.fixture(scope="module")
def still(tmp_path_factory) -> Path:
    return _sequences(tmp_path_factory.mktemp("still") / "seq", max_speed=0.0)


def _planted(gt_file: Path) -> tuple[list[list[int]], dict[int, list[dict]]]:
    """The sequences and, as every frame's detections, its ground-truth boxes (score 1)."""
    gt = json.loads(gt_file.read_text())
    dets: dict[int, list[dict]] = {img["id"]: [] for img in gt["images"]}
    for a in gt["annotations"]:
        dets[a["image_id"]].append({"image_id": a["image_id"], "category_id": a["category_id"],
                                    "bbox": a["bbox"], "score": 1.0})
    return sequences_of(gt), dets


def _sap(gt_file: Path, runtime: float) -> dict:
    seqs, dets = _planted(gt_file)
    matched, _, _ = replay(seqs, [[runtime] * len(s) for s in seqs], FPS)
    return streaming_ap(gt_file, dets, matched)


def test_zero_runtime_sap_equals_offline(moving):
    r = _sap(moving, 0.0)
    assert r["streaming"] == r["offline"]
    assert r["offline"]["AP"] == 100.0 and r["frames_without_output"] == 0


def test_fast_model_loses_ap_only_where_objects_move(moving, still):
    fast_moving = _sap(moving, 0.010)
    assert fast_moving["offline"]["AP"] == 100.0
    assert fast_moving["streaming"]["AP"] < 100.0
    assert fast_moving["frames_without_output"] == 2  # frame 0 of each sequence
    # Nothing moves: frame i-1's boxes are frame i's, so sAP is offline AP without frame 0.
    fast_still = _sap(still, 0.010)
    seqs, dets = _planted(still)
    first = {s[0] for s in seqs}
    no_first = streaming_ap(still, dets, {i: None if i in first else i for s in seqs for i in s})
    assert fast_still["streaming"] == no_first["streaming"]
    assert fast_still["streaming"]["AP"] < fast_still["offline"]["AP"] == 100.0


def test_slow_model_falls_further(moving):
    fast, slow = _sap(moving, 0.010), _sap(moving, 0.050)
    assert slow["frames_without_output"] == 4  # frames 0 and 1 of each sequence
    assert slow["streaming"]["AP"] < fast["streaming"]["AP"] < slow["offline"]["AP"]


def test_streaming_ap_needs_every_frame(moving):
    _, dets = _planted(moving)
    with pytest.raises(ValueError, match="every ground-truth frame"):
        streaming_ap(moving, dets, {0: 0})


def test_sweep_table_picks_best_scale_per_model():
    def rec(model, scale, sap, device="cpu: X (2 threads)"):
        return {"model": model, "scale": scale, "sAP": sap, "AP": 30.0, "input_size": [1, 1],
                "runtime_ms": {"mean": 1.0}, "device": device,
                "latency": {"source": "measured", "device": device}}

    rows = sweep_table([rec("a", 0.75, 9.0), rec("a", 0.5, 12.0), rec("a", 0.25, 10.0),
                        rec("b", 0.5, 5.0), rec("b", 0.25, 5.0)])
    assert [(r["model"], r["best_scale"], r["sAP"]) for r in rows] == [("a", 0.5, 12.0),
                                                                       ("b", 0.25, 5.0)]
    assert rows[0]["sAP_by_scale"] == {"0.25": 10.0, "0.5": 12.0, "0.75": 9.0}
    with pytest.raises(MtpdError, match="mix latency sources/devices"):
        sweep_table([rec("a", 0.5, 1.0), rec("a", 0.25, 1.0, device="cuda: Y")])


# --- end to end with a real (random) RetinaNet --------------------------------------------------
@pytest.fixture(scope="module")
def sequences_and_model(tmp_path_factory) -> tuple[Path, Path]:
    """A 2 x 7-frame sequence set and a randomly initialised RetinaNet checkpoint for it: its
    manifest and the checkpoint. (Its initial weights, with the focal-loss prior: few boxes
    above the score threshold, fast NMS.)"""
    root = tmp_path_factory.mktemp("e2e")
    spec = SequencesSpec.from_settings(num_train=1, num_proxy=0, num_val=2, frames=7, seed=5)
    manifest = generate_sequences(root / "seq", spec) / "dataset.json"
    ckpt = random_checkpoint(CONFIG, manifest, root / "model.pth", {"note": "random init"},
                             test_split="val")
    return manifest, ckpt


CONFIG = "mtpd::shapes/retinanet_r18w16_shapes.py"
KEYS = {"model", "config", "checkpoint", "dataset", "split", "scale", "native_size",
        "input_size", "fps", "latency", "device", "runtime_ms", "measured_runtime_ms", "sAP",
        "AP", "streaming", "offline", "sequences", "frames", "frames_processed",
        "frames_skipped", "frames_without_output", "class_map", "processed_frames",
        "measured_runtimes_s"}


def test_run_streaming_end_to_end(sequences_and_model, tmp_path):
    from mtpd.streaming import run_streaming

    manifest, ckpt = sequences_and_model
    records = []
    for scale, size in ((0.5, [160, 100]), (0.25, [80, 50])):
        out = tmp_path / f"s{scale}.json"
        rec = run_streaming(CONFIG, ckpt, manifest, "val", out, scale=scale, latency=0.05,
                            name="retina_r18w16")
        assert json.loads(out.read_text()) == rec
        assert set(rec) == KEYS
        assert rec["input_size"] == size and rec["native_size"] == [320, 200]
        assert DEVICE.match(rec["device"])
        assert rec["latency"] == {"source": "given", "perf_factor": 1.0, "seed": 0,
                                  "device": None, "seconds": 0.05}
        # 50 ms a frame on 7 frames: f0, f1, f3, f4, f6 processed, f2, f5 skipped, per sequence
        assert rec["processed_frames"] == [[0, 1, 3, 4, 6], [0, 1, 3, 4, 6]]
        assert (rec["frames"], rec["frames_processed"], rec["frames_skipped"]) == (14, 10, 4)
        assert rec["frames_without_output"] == 4
        assert rec["runtime_ms"] == {"mean": 50.0, "median": 50.0, "p90": 50.0}
        assert len(rec["measured_runtimes_s"]) == 14 and rec["measured_runtime_ms"]["mean"] > 0
        assert set(rec["streaming"]) == {"AP", "AP50", "AP75", "APs", "APm", "APl"}
        records.append(rec)
    rows = sweep_table(records)
    assert len(rows) == 1 and rows[0]["best_scale"] in (0.25, 0.5)
    measured = run_streaming(CONFIG, ckpt, manifest, "val", tmp_path / "m.json", scale=0.25,
                             perf_factor=2.0)
    assert measured["latency"]["source"] == "measured"
    assert measured["latency"]["device"] == measured["device"]
    half = measured["measured_runtime_ms"]["mean"] / 2
    assert measured["runtime_ms"]["mean"] == pytest.approx(half, abs=0.01)


def test_run_streaming_with_class_map(sequences_and_model, tmp_path):
    """A model with more classes than the data keeps its own head; unmapped labels are dropped."""
    from mtpd.streaming import run_streaming

    _, ckpt = sequences_and_model  # 12 shape_texture classes; this data has the 3 disk classes only
    spec = SequencesSpec.from_settings(num_train=1, num_proxy=0, num_val=1, frames=3, seed=6,
                                       shapes="disk")
    manifest = generate_sequences(tmp_path / "disks", spec) / "dataset.json"
    rec = run_streaming(CONFIG, ckpt, manifest, "val", tmp_path / "m.json", scale=0.25,
                        latency=0.0, class_map={0: 0, 1: 1, 2: 2})
    assert rec["class_map"] == {"0": 0, "1": 1, "2": 2}
    assert rec["processed_frames"] == [[0, 1, 2]] and rec["sAP"] == rec["AP"]
