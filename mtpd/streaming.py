"""Streaming AP (Li et al., Towards Streaming Perception, ECCV 2020) for a detector on sequences.

Offline AP lets a detector take as long as it likes; a vehicle cannot. Here frames arrive at a
fixed rate (30 FPS), one detector takes the newest frame that has arrived whenever it is idle
(frames arriving while it is busy are skipped), and every ground-truth frame is scored against
the latest output finished by that frame's time. Slow models answer with stale boxes, so the
best input scale under streaming is often smaller than offline.

How mtpd does it (the "simulated" variant, reproducible and cheap): the detector runs over every
frame once, each frame timed on this device (preprocessing + forward + postprocessing, frames
preloaded, GPU synchronised, warm-up excluded); then `simulate` replays those runtimes (or a
given constant, or runtimes drawn from a recorded distribution, optionally divided by a
performance factor) and `match` pairs ground-truth frames with outputs. One pooled COCO
evaluation over all frames of all sequences gives sAP (`streaming_ap`).

`import mtpd.streaming` stays light: torch and MMDetection are imported inside functions.
"""
from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from mtpd.data.manifest import read_annotation_file
from mtpd.devices import device_name
from mtpd.errors import DatasetError, ModelConfigError, MtpdError
from mtpd.io import atomic_write_json, read_json_file

EPS = 1e-6           # seconds: float sums of runtimes must not move an output across a frame time
MAX_DETS = 100       # detections per frame, as COCO's maxDets
Latency = str | float | Sequence[float]


# --- the simulation -------------------------------------------------------------------------
@dataclass(frozen=True)
class Output:
    """One detector output: the frame it processed, when it started and when it finished."""

    frame: int
    start: float
    finish: float


def simulate(num_frames: int, runtimes: Sequence[float], fps: float = 30.0) -> list[Output]:
    """The outputs of one detector on one sequence (time restarts at 0 for every sequence).

    Frame j arrives at j / fps. When idle at time t, the detector takes the newest frame that has
    arrived, or waits for the next arrival if it has processed that one already; it runs for
    runtimes[j] seconds. Frames that arrive while it is busy and are not the newest are skipped.
    """
    _check_runtimes(num_frames, runtimes, fps)
    outputs: list[Output] = []
    t, last = 0.0, -1
    while True:
        j = min(int(math.floor(t * fps + EPS * fps)), num_frames - 1)
        if j <= last:
            j = last + 1
            if j >= num_frames:
                return outputs
            t = j / fps
        finish = t + float(runtimes[j])
        outputs.append(Output(j, t, finish))
        t, last = finish, j


def _check_runtimes(num_frames: int, runtimes: Sequence[float], fps: float) -> None:
    """Programming errors in the simulation's inputs (user input is checked before)."""
    if num_frames < 1 or fps <= 0:
        raise ValueError(f"need num_frames >= 1 and fps > 0, got {num_frames}, {fps}")
    if len(runtimes) != num_frames:
        raise ValueError(f"{len(runtimes)} runtimes for {num_frames} frames; give one per frame")
    if any(not r >= 0 for r in runtimes):
        raise ValueError("runtimes must be non-negative seconds")


def match(num_frames: int, outputs: Sequence[Output], fps: float = 30.0) -> list[int | None]:
    """For each ground-truth frame i, the frame whose output is the latest finished by i / fps
    (inclusive, up to EPS), or None before the first output."""
    matched: list[int | None] = []
    k, current = 0, None
    for i in range(num_frames):
        while k < len(outputs) and outputs[k].finish <= i / fps + EPS:
            current = outputs[k].frame
            k += 1
        matched.append(current)
    return matched


def replay(sequences: Sequence[Sequence[int]], runtimes: Sequence[Sequence[float]],
           fps: float = 30.0) -> tuple[dict[int, int | None], dict[str, int], list[list[int]]]:
    """Simulates every sequence (image ids in order) and maps each ground-truth image id to the
    image id whose detections answer it (None: no output yet). Also returns frame counts and,
    per sequence, the indices of the frames the detector processed."""
    matched: dict[int, int | None] = {}
    counts = {"sequences": len(sequences), "frames": 0, "frames_processed": 0,
              "frames_skipped": 0, "frames_without_output": 0}
    processed = []
    for ids, times in zip(sequences, runtimes, strict=True):
        outputs = simulate(len(ids), times, fps)
        for gt_id, src in zip(ids, match(len(ids), outputs, fps), strict=True):
            matched[gt_id] = None if src is None else ids[src]
            counts["frames_without_output"] += src is None
        counts["frames"] += len(ids)
        counts["frames_processed"] += len(outputs)
        counts["frames_skipped"] += len(ids) - len(outputs)
        processed.append([o.frame for o in outputs])
    return matched, counts, processed


# --- latency sources ------------------------------------------------------------------------
def latency_source(latency: Latency) -> str:
    """`measured`, `given` (a constant in seconds) or `drawn` (from a list of seconds)."""
    if isinstance(latency, str):
        if latency != "measured":
            raise MtpdError(f"latency {latency!r} is not understood; give 'measured', a number "
                            "of seconds, or a list of recorded runtimes in seconds")
        return "measured"
    if isinstance(latency, (int, float)) and not isinstance(latency, bool):
        if not latency >= 0:
            raise MtpdError(f"latency {latency} s is negative; give seconds >= 0")
        return "given"
    values = list(latency)
    if not values or any(not isinstance(v, (int, float)) or not v >= 0 for v in values):
        raise MtpdError("a latency distribution must be a non-empty list of runtimes in seconds "
                        f">= 0 (got {values[:5]}...)")
    return "drawn"


def draw_runtimes(distribution: Sequence[float], n: int, seed: int | Sequence[int],
                  perf_factor: float = 1.0) -> list[float]:
    """`n` runtimes drawn with replacement from recorded ones, divided by `perf_factor` (> 1
    emulates a faster device); the same seed gives the same draws for any factor."""
    _check_perf_factor(perf_factor)
    rng = np.random.default_rng(seed)
    draws = rng.choice(np.asarray(distribution, dtype=np.float64), size=n, replace=True)
    return [float(v) / perf_factor for v in draws]


def _check_perf_factor(perf_factor: float) -> None:
    if not perf_factor > 0:
        raise MtpdError(f"perf_factor {perf_factor} must be > 0 (runtimes are divided by it)")


def runtimes_for(latency: Latency, measured: Sequence[float], *, perf_factor: float = 1.0,
                 seed: int = 0, sequence: int = 0) -> list[float]:
    """The runtimes one sequence is simulated with, one per frame, divided by `perf_factor`.

    Drawn runtimes use an RNG seeded by (seed, sequence index), so a sequence's draws do not
    depend on the others."""
    _check_perf_factor(perf_factor)
    source = latency_source(latency)
    if source == "measured":
        return [float(v) / perf_factor for v in measured]
    if source == "given":
        return [float(latency) / perf_factor] * len(measured)  # type: ignore[arg-type]
    return draw_runtimes(latency, len(measured), [seed, sequence], perf_factor)  # type: ignore


def parse_latency(text: str) -> tuple[Latency, str | None]:
    """A CLI latency: `measured`, seconds (`0.05`), or a JSON file holding a list of seconds or
    a `run_streaming` record (its measured runtimes). Returns it and the device it came from."""
    if text == "measured":
        return "measured", None
    try:
        return float(text), None
    except ValueError:
        pass
    path = Path(text)
    if not path.is_file():
        raise MtpdError(f"latency {text!r} is neither 'measured', a number of seconds, nor an "
                        "existing JSON file of runtimes")
    raw = read_json_file(path, "latency file", MtpdError, "give a runtime record")
    if isinstance(raw, dict) and "measured_runtimes_s" in raw:
        return list(raw["measured_runtimes_s"]), raw.get("device")
    if isinstance(raw, list):
        latency_source(raw)
        return raw, None
    raise MtpdError(f"latency file {path} holds neither a list of seconds nor a streaming "
                    "record with 'measured_runtimes_s'")


def runtime_stats(runtimes: Sequence[float]) -> dict[str, float]:
    """Mean, median and 90th percentile in milliseconds."""
    arr = np.asarray(runtimes, dtype=np.float64) * 1000
    if arr.size == 0:
        return {"mean": 0.0, "median": 0.0, "p90": 0.0}
    return {"mean": round(float(arr.mean()), 3), "median": round(float(np.median(arr)), 3),
            "p90": round(float(np.percentile(arr, 90)), 3)}


# --- scoring --------------------------------------------------------------------------------
def sequences_of(gt: dict) -> list[list[int]]:
    """Image ids per sequence (`sid`), each in the JSON order of its images (never reordered),
    sequences in order of first appearance."""
    order: dict[Any, list[int]] = {}
    for img in gt["images"]:
        if "sid" not in img:
            raise DatasetError(f"image {img.get('id')} has no 'sid': streaming AP needs "
                               "sequences in Argoverse-HD's layout (convert with "
                               "mtpd.data.argoverse.to_coco, or generate sequences)")
        order.setdefault(img["sid"], []).append(img["id"])
    return list(order.values())


def _frame_results(dets: Sequence[dict], image_id: int) -> list[dict]:
    """A frame's best MAX_DETS detections, copied with the image id they answer."""
    best = sorted(dets, key=lambda d: -d["score"])[:MAX_DETS]
    return [{**d, "image_id": image_id} for d in best]


def streaming_ap(gt_file: str | Path, detections_by_frame: dict[int, list[dict]],
                 matched: dict[int, int | None]) -> dict[str, Any]:
    """sAP: every ground-truth frame answered by its matched frame's detections (none for None),
    scored in one pooled COCO evaluation; offline AP (each frame answers itself) beside it."""
    from mtpd.evaluate import coco_eval

    gt_ids = {img["id"] for img in read_annotation_file(gt_file)["images"]}
    if set(matched) != gt_ids:
        raise ValueError(f"matched covers {len(matched)} frames, {gt_file} has {len(gt_ids)}; "
                         "give every ground-truth frame a match (None for no output)")
    streamed, offline = [], []
    for gt_id, src in matched.items():
        if src is not None:
            streamed += _frame_results(detections_by_frame.get(src, []), gt_id)
        offline += _frame_results(detections_by_frame.get(gt_id, []), gt_id)
    return {"streaming": coco_eval(gt_file, streamed), "offline": coco_eval(gt_file, offline),
            "frames": len(gt_ids),
            "frames_without_output": sum(src is None for src in matched.values())}


# --- the runner -----------------------------------------------------------------------------
def build_frame_model(model_config: str, checkpoint: str | Path, manifest: Any, split: str,
                      class_map: dict[int, int] | None, device: str,
                      input_size: tuple[int, int] | None = None) -> tuple[Any, Any]:
    """The detector as offline evaluation builds it; with a class map the model keeps its
    config's own classes (e.g. COCO's 80), which must cover the map's labels."""
    from mtpd.evaluate import build_test_model
    from mtpd.model_config import config_num_classes

    model, cfg = build_test_model(model_config, checkpoint, manifest, split, device,
                                  num_workers=0, input_size=input_size,
                                  keep_num_classes=class_map is not None)
    if class_map is not None:
        own = config_num_classes(cfg.model)
        if own is None or own <= max(class_map):
            raise ModelConfigError(f"{model_config}: the class map needs labels up to "
                                   f"{max(class_map)}, but the config's num_classes is {own}")
    return model, cfg


def _short_type(step: dict) -> str:
    return str(step.get("type", "")).split(".")[-1]


def frame_pipeline(cfg: Any, size: tuple[int, int] | None, model_config: str) -> Any:
    """The test pipeline fed preloaded frames: image from an array, no annotations, and every
    resize step (`mtpd.model_config.is_resize`) a Resize to `size` (width, height) keeping the
    aspect ratio (None: the config's own steps)."""
    from mmengine.dataset import Compose

    from mtpd.model_config import is_resize, make_fixed_resize, pipeline

    steps, resized = [], False
    for step in pipeline(cfg, "test_dataloader"):
        kind = _short_type(step)
        if kind == "LoadImageFromFile":
            steps.append(dict(type="LoadImageFromNDArray"))
        elif kind == "LoadAnnotations":
            continue
        elif is_resize(step):
            steps.append(dict(step))
            if size:
                make_fixed_resize(steps[-1], size)
            resized = True
        else:
            steps.append(dict(step))
    if not resized:
        raise ModelConfigError(f"{model_config}: the test pipeline has no 'Resize' step, so the "
                               "input scale cannot be set; add dict(type='Resize', ...)")
    return Compose(steps)


def detect_frame(model: Any, pipeline: Any, img: np.ndarray, image_id: int, cat_ids: list[int],
            class_map: dict[int, int] | None) -> tuple[list[dict], tuple[int, int]]:
    """One frame through pipeline, model and postprocessing to COCO results; also the input
    size (width, height) the model saw."""
    import torch
    from mmengine.dataset import pseudo_collate

    from mtpd.evaluate import to_coco_results

    data = pipeline({"img": img, "img_id": image_id})
    with torch.no_grad():
        sample = model.test_step(pseudo_collate([data]))[0]
    bbox_res, _ = to_coco_results(sample, cat_ids, class_map)  # as offline evaluation maps
    h, w = sample.metainfo["img_shape"][:2]
    return bbox_res, (int(w), int(h))


def synchronize(device: str) -> None:
    """Waits for the GPU, so a timer stopped after this covers the work it was given."""
    if device.startswith("cuda"):
        import torch

        torch.cuda.synchronize()


def _timed_pass(model: Any, pipeline: Any, frames: list[tuple[int, Path]], cat_ids: list[int],
                class_map: dict[int, int] | None, device: str, chunk: int = 64
                ) -> tuple[dict[int, list[dict]], list[float], tuple[int, int]]:
    """Detections and seconds per frame. Frames are decoded `chunk` at a time before timing
    (disk I/O excluded, memory bounded); two untimed warm-up runs come first."""
    import cv2

    def load(path: Path) -> np.ndarray:
        img = cv2.imread(str(path), cv2.IMREAD_COLOR)
        if img is None:
            raise DatasetError(f"frame {path} cannot be read; check the manifest's img_dir")
        return img

    first = load(frames[0][1])
    for _ in range(2):
        detect_frame(model, pipeline, first, frames[0][0], cat_ids, class_map)
    synchronize(device)
    dets: dict[int, list[dict]] = {}
    runtimes: list[float] = []
    size = (0, 0)
    for start in range(0, len(frames), chunk):
        batch = [(image_id, load(path)) for image_id, path in frames[start:start + chunk]]
        for image_id, img in batch:
            t0 = time.perf_counter()
            dets[image_id], size = detect_frame(model, pipeline, img, image_id, cat_ids, class_map)
            synchronize(device)
            runtimes.append(time.perf_counter() - t0)
    return dets, runtimes, size


def native_size(gt: dict, gt_file: str | Path) -> tuple[int, int]:
    """The one frame size of the split; scales are fractions of it."""
    sizes = {(img["width"], img["height"]) for img in gt["images"]}
    if len(sizes) != 1:
        raise DatasetError(f"{gt_file} mixes frame sizes {sorted(sizes)[:4]}; streaming input "
                           "scales are fractions of one native size")
    return sizes.pop()


def run_streaming(model_config: str, checkpoint: str | Path, manifest_path: str | Path,
                  split: str, out: str | Path, *, scale: float, latency: Latency = "measured",
                  perf_factor: float = 1.0, seed: int = 0,
                  class_map: dict[int, int] | None = None, fps: float = 30.0,
                  name: str | None = None, latency_device: str | None = None,
                  latency_network: str | None = None, device: str | None = None
                  ) -> dict[str, Any]:
    """Measures a detector on a sequence split at one input scale; writes sAP, offline AP and
    the runtimes (with the device they were measured on) as JSON at `out`.

    `class_map` maps the model's labels to the dataset's (`mtpd.data.argoverse.class_mapping`;
    None when the model was trained on the dataset's classes). `latency_device` names where a
    drawn distribution was recorded and `latency_network` the network whose shared timing it is
    (`mtpd.cost`); `name` identifies the model in sweep tables."""
    import torch

    from mtpd.data.checked import load_checked
    from mtpd.model_config import scale_to_size

    source = latency_source(latency)
    _check_perf_factor(perf_factor)
    manifest = load_checked(manifest_path)
    s = manifest.split(split)
    gt = read_annotation_file(s.ann_file)
    sequences = sequences_of(gt)
    native = native_size(gt, s.ann_file)
    size = scale_to_size(scale, native)
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    model, cfg = build_frame_model(model_config, checkpoint, manifest, split, class_map, device)
    pipeline = frame_pipeline(cfg, size, model_config)
    paths = {img["id"]: s.img_dir / img["file_name"] for img in gt["images"]}
    frames = [(i, paths[i]) for ids in sequences for i in ids]
    cat_ids = sorted(c["id"] for c in gt["categories"])
    dets, measured, seen = _timed_pass(model, pipeline, frames, cat_ids, class_map, device)
    by_id = dict(zip([i for i, _ in frames], measured, strict=True))
    runtimes = [runtimes_for(latency, [by_id[i] for i in ids], perf_factor=perf_factor,
                             seed=seed, sequence=k) for k, ids in enumerate(sequences)]
    matched, counts, processed = replay(sequences, runtimes, fps)
    scores = streaming_ap(s.ann_file, dets, matched)
    measured_on = device_name(device)
    record = {
        "model": name or str(checkpoint), "config": str(model_config),
        "checkpoint": str(checkpoint), "dataset": str(manifest_path), "split": split,
        "scale": scale, "native_size": list(native), "input_size": list(seen), "fps": fps,
        "latency": _latency_info(latency, source, perf_factor, seed,
                                 measured_on if source == "measured" else latency_device,
                                 latency_network),
        "device": measured_on, "runtime_ms": runtime_stats([r for rs in runtimes for r in rs]),
        "measured_runtime_ms": runtime_stats(measured),
        "sAP": scores["streaming"]["AP"], "AP": scores["offline"]["AP"],
        "streaming": scores["streaming"], "offline": scores["offline"], **counts,
        "class_map": None if class_map is None else {str(k): v for k, v in class_map.items()},
        "processed_frames": processed, "measured_runtimes_s": [round(r, 6) for r in measured],
    }
    atomic_write_json(out, record)
    return record


def _latency_info(latency: Latency, source: str, perf_factor: float, seed: int,
                  device: str | None, network: str | None = None) -> dict[str, Any]:
    """How the simulated runtimes were made, on which device (None for a given constant) and,
    for a network's shared timing, which network's."""
    info: dict[str, Any] = {"source": source, "perf_factor": perf_factor, "seed": seed,
                            "device": None if source == "given" else device}
    if network is not None:
        info["network"] = network
    if source == "given":
        info["seconds"] = float(latency)  # type: ignore[arg-type]
    if source == "drawn":
        info["distribution_size"] = len(latency)  # type: ignore[arg-type]
    return info

