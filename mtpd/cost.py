"""What each network of an experiment costs to run: parameters, FLOPs and one latency.

Runtime is a property of a network (config and classes), its input size and the device, not of
a checkpoint: timing every checkpoint on its own lets machine load decide which of two copies
of one network looks faster. So one job (`measure`) times every network of an experiment
together, round-robin: `rounds` rounds, each running `images` images through every (network,
input) pair in turn, so load affects every network alike; the spread reported is the standard
deviation of the per-round medians. Each network is timed with one trained checkpoint of it
(postprocessing, i.e. NMS, depends a little on how many boxes a model outputs). The tables'
cost columns and the streaming runtimes of every checkpoint of a network use that one record.

What is timed: one preloaded image at batch 1 through the test pipeline, the network and its
postprocessing (score threshold, NMS), the device synchronised (as streaming runs a frame).
What is counted (`complexity`, MMEngine's own analysis, `mmengine.analysis`): parameters of
the whole detector, and FLOPs of backbone, neck and head on the padded evaluation tensor with
one multiply-add counted as one FLOP (as MMDetection's get_flops and the detection papers do).
Not counted: preprocessing, anchor generation, box decoding, score threshold and NMS, and ops
MMEngine has no counter for (listed in the record as `uncounted_ops`).
"""
from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np

from mtpd.data.manifest import read_annotation_file
from mtpd.devices import device_name
from mtpd.errors import MtpdError
from mtpd.io import atomic_write_json, read_json_file

STUDENT = "student"  # the member key of the student network (teachers: "teacher:<name>")
EVAL_INPUT = "eval"  # the input label of the evaluation split (streaming: "stream_s<scale>")


@dataclass(frozen=True)
class Network:
    """One architecture to measure: `members` are the models of the tables that are it."""

    name: str
    config: str
    checkpoint: str
    classes: str = "dataset"        # "coco": the model keeps COCO's 80 classes (mapped)
    members: tuple[str, ...] = field(default_factory=tuple)


def teacher_member(name: str) -> str:
    return f"teacher:{name}"


def stream_input(scale: float | str) -> str:
    return f"stream_s{scale}"


def plan_networks(student: dict[str, Any], student_checkpoint: str,
                  teachers: dict[str, dict[str, Any]], teacher_model: Any) -> list[Network]:
    """The distinct networks (config, classes) of an experiment, the student's first, each named
    after its config file: teachers with the student's config and classes are the student's
    network, teachers sharing a config share one. `teacher_model(name)` is a teacher's
    checkpoint path; a network is timed with its first model's checkpoint."""
    found: dict[tuple[str, str], tuple[str, list[str]]] = {
        (student["config"], "dataset"): (student_checkpoint, [STUDENT])}
    for name, t in teachers.items():
        key = (t["config"], t.get("classes", "dataset"))
        found.setdefault(key, (teacher_model(name), []))[1].append(teacher_member(name))
    networks: list[Network] = []
    for (config, classes), (checkpoint, members) in found.items():
        name = PurePosixPath(str(config).split("::")[-1]).stem + ("+coco" if classes == "coco"
                                                                  else "")
        if any(n.name == name for n in networks):  # same file name in another directory
            name = f"{name}-{len(networks)}"
        networks.append(Network(name, config, checkpoint, classes, tuple(members)))
    return networks


def network_for(networks: Sequence[Network], member: str) -> str:
    """The name of the network a table model (`student`, `teacher:<name>`) is."""
    for net in networks:
        if member in net.members:
            return net.name
    raise KeyError(f"no network has {member}")


def complexity(model: Any, inputs: tuple[Any, ...]) -> dict[str, Any]:
    """Parameters and FLOPs (one multiply-add = one FLOP) of `model(*inputs)`."""
    from mmengine.analysis import FlopAnalyzer, parameter_count

    analyzer = FlopAnalyzer(model, inputs)
    analyzer.unsupported_ops_warnings(False).uncalled_modules_warnings(False)
    flops = int(analyzer.total())
    return {"params": int(parameter_count(model)[""]), "flops": flops,
            "uncounted_ops": dict(sorted(analyzer.unsupported_ops().items()))}


def latency_stats(rounds: Sequence[Sequence[float]]) -> dict[str, float]:
    """Median, p90 and mean over every timed image (ms), and the sd of per-round medians."""
    every = np.asarray([t for r in rounds for t in r], dtype=np.float64) * 1000
    medians = [float(np.median(r)) * 1000 for r in rounds if len(r)]
    return {"median": round(float(np.median(every)), 3),
            "p90": round(float(np.percentile(every, 90)), 3),
            "mean": round(float(every.mean()), 3),
            "round_median_sd": round(float(np.std(medians, ddof=1)), 3)
            if len(medians) > 1 else 0.0}


@dataclass(frozen=True)
class Input:
    """Images a network is measured on: a split, and an input size (None: the config's)."""

    label: str
    manifest: str
    split: str
    size: tuple[int, int] | None = None


def plan_inputs(manifest: str, split: str, stream_manifest: str | None = None,
                stream_split: str | None = None, scales: Sequence[float] = ()) -> list[Input]:
    """The evaluation split at its own input size, then each streaming scale of the sequence
    split (a fraction of its native frame size, as `mtpd stream` resizes)."""
    inputs = [Input(EVAL_INPUT, manifest, split)]
    if scales:
        from mtpd.data.checked import load_checked
        from mtpd.model_config import scale_to_size
        from mtpd.streaming import native_size

        ann_file = load_checked(stream_manifest).split(stream_split).ann_file
        native = native_size(read_annotation_file(ann_file), ann_file)
        inputs += [Input(stream_input(s), str(stream_manifest), str(stream_split),
                         scale_to_size(s, native)) for s in scales]
    return inputs


class _Pair:
    """One (network, input): the model, its pipeline and preloaded images, ready to time."""

    def __init__(self, net: Network, inp: Input, device: str, images: int,
                 input_size: tuple[int, int] | None) -> None:
        import cv2

        from mtpd.data.argoverse import COCO_CLASSES, class_mapping
        from mtpd.data.checked import load_checked
        from mtpd.streaming import build_frame_model, frame_pipeline

        manifest = load_checked(inp.manifest)
        split = manifest.split(inp.split)
        gt = read_annotation_file(split.ann_file)
        if not gt["images"]:
            raise MtpdError(f"{split.ann_file} has no images to time the networks on")
        self.class_map = (class_mapping(COCO_CLASSES, manifest.classes)
                          if net.classes == "coco" else None)
        self.model, cfg = build_frame_model(net.config, net.checkpoint, manifest, inp.split,
                                            self.class_map, device, input_size=input_size)
        self.pipeline = frame_pipeline(cfg, inp.size, net.config)
        self.cat_ids = sorted(c["id"] for c in gt["categories"])
        chosen = [gt["images"][i % len(gt["images"])] for i in range(images)]
        self.frames = []
        for img in chosen:
            array = cv2.imread(str(split.img_dir / img["file_name"]), cv2.IMREAD_COLOR)
            if array is None:
                raise MtpdError(f"image {split.img_dir / img['file_name']} cannot be read; "
                                "check the manifest's img_dir")
            self.frames.append((int(img["id"]), array))
        self.device = device
        self.rounds: list[list[float]] = []

    def run(self, image_id: int, img: np.ndarray) -> tuple[int, int]:
        from mtpd.streaming import detect_frame, synchronize

        _, size = detect_frame(self.model, self.pipeline, img, image_id, self.cat_ids,
                               self.class_map)
        synchronize(self.device)
        return size

    def time_round(self) -> None:
        times = []
        for image_id, img in self.frames:
            t0 = time.perf_counter()
            self.run(image_id, img)
            times.append(time.perf_counter() - t0)
        self.rounds.append(times)

    def complexity(self) -> dict[str, Any]:
        """FLOPs on the first image as the data preprocessor pads it for the network. The
        image's metadata is bound to the forward (as MMDetection's get_flops does): two-stage
        detectors need it between their stages."""
        import torch
        from mmengine.dataset import pseudo_collate

        class Traced(torch.nn.Module):
            def __init__(self, model: Any, samples: Any) -> None:
                super().__init__()
                self.model, self.samples = model, samples

            def forward(self, inputs: torch.Tensor) -> Any:
                return self.model._forward(inputs, self.samples)

        image_id, img = self.frames[0]
        data = self.model.data_preprocessor(
            pseudo_collate([self.pipeline({"img": img, "img_id": image_id})]), False)
        with torch.no_grad():
            found = complexity(Traced(self.model, data["data_samples"]), (data["inputs"],))
        h, w = data["inputs"].shape[-2:]
        return {**found, "tensor_size": [int(w), int(h)]}


def measure(networks: Sequence[Network], inputs: Sequence[Input], out: str | Path, *,
            rounds: int = 5, images: int = 10, warmup: int = 3,
            input_size: tuple[int, int] | None = None, device: str | None = None
            ) -> dict[str, Any]:
    """Times every network on every input, interleaved, counts its FLOPs and parameters, and
    writes the record (JSON) at `out`. `input_size` is the evaluation's own (a Resize scale)."""
    import torch

    if rounds < 1 or images < 1 or warmup < 0:
        raise MtpdError(f"need rounds >= 1, images >= 1 and warmup >= 0 (got {rounds}, "
                        f"{images}, {warmup}); fix evaluation.cost in the config")
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    pairs = {(n.name, i.label): _Pair(n, i, device, images,
                                      input_size if i.label == EVAL_INPUT else None)
             for n in networks for i in inputs}
    sizes = {}
    for key, pair in pairs.items():
        for image_id, img in pair.frames[:1] * warmup:
            pair.run(image_id, img)
        sizes[key] = pair.run(*pair.frames[0])
    for _ in range(rounds):  # round-robin: load while timing falls on every pair alike
        for pair in pairs.values():
            pair.time_round()
    record: dict[str, Any] = {
        "device": device_name(device), "rounds": rounds, "images": images, "warmup": warmup,
        "counted": "parameters of the detector; FLOPs (multiply-adds) of backbone, neck and "
                   "head via mmengine.analysis; not pre/postprocessing (NMS)",
        "timed": "batch 1, preloaded image, test pipeline + network + postprocessing (NMS)",
        "networks": {}}
    for net in networks:
        per_input = {}
        for inp in inputs:
            pair = pairs[(net.name, inp.label)]
            found = pair.complexity()
            per_input[inp.label] = {
                "input_size": list(sizes[(net.name, inp.label)]),
                "tensor_size": found["tensor_size"], "gflops": round(found["flops"] / 1e9, 4),
                "uncounted_ops": found["uncounted_ops"],
                "latency_ms": latency_stats(pair.rounds),
                "runtimes_s": [round(t, 6) for r in pair.rounds for t in r]}
            params = found["params"]
        record["networks"][net.name] = {**asdict(net), "members": list(net.members),
                                        "params_M": round(params / 1e6, 4), "inputs": per_input}
    atomic_write_json(out, record)
    return record


def read_record(path: str | Path) -> dict[str, Any]:
    return read_json_file(path, "cost record", MtpdError, "re-run the measure_cost job")


def network_of(record: dict[str, Any], member: str) -> dict[str, Any] | None:
    """The network entry a table model (`student` or `teacher:<name>`) is, if measured."""
    for net in record["networks"].values():
        if member in net["members"]:
            return net
    return None


def stream_runtimes(path: str | Path, network: str, scale: float
                    ) -> tuple[list[float], str]:
    """A network's timed runtimes (seconds) at a streaming scale, and the device they were
    timed on: what `mtpd stream --latency <cost.json> --network NAME` simulates with."""
    record = read_record(path)
    net = record["networks"].get(network)
    if net is None:
        raise MtpdError(f"{path} has no network {network!r} (it has "
                        f"{', '.join(record['networks'])}); pass one of those to --network")
    entry = net["inputs"].get(stream_input(scale))
    if entry is None:
        raise MtpdError(f"{path} timed {network} at no streaming scale {scale} (it has "
                        f"{', '.join(net['inputs'])}); re-run measure_cost with this scale")
    return list(entry["runtimes_s"]), record["device"]
