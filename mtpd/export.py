"""Export a trained single-stage detector to ONNX, checked against PyTorch before it is kept.

The graph holds what is pure tensor arithmetic, the same for every input: backbone, neck and
dense head, from the preprocessed image batch to the head's raw per-level outputs. What depends
on the image or on data-dependent control flow stays in Python, in `OnnxDetector`, which is the
documented pre- and postprocessing: the config's test pipeline and data preprocessor before,
the head's own `predict_by_feat` (score threshold, top-k, NMS, rescale) after. Keeping NMS out
of the graph means the ONNX file needs no custom operators and gives MMDetection's detections
exactly, so a deployment can be scored with the same COCO code as the checkpoint.

The input `image` (N, 3, H, W) is already normalised and padded; its batch, height and width
axes are all dynamic (so are the outputs'), so one file serves any batch and input size; the
parity check runs the sizes the split's test pipeline makes. The file is only kept when its
outputs match PyTorch (`RAW_ATOL`, `BOX_ATOL`, `SCORE_ATOL`, `AP_ATOL`); the record beside it
(`record_path`) says how it was made and how close it is.
The exporter is `torch.onnx.export(..., dynamo=False)` (TorchScript tracing), which needs the
`onnx` package but not `onnxscript`; running it needs `onnxruntime`.
"""
from __future__ import annotations

import logging
import re
import time
import warnings
from pathlib import Path
from typing import Any

from mtpd.errors import ModelConfigError, MtpdError

log = logging.getLogger("mtpd.export")

OPSET = 17  # supported by the TorchScript exporter and by every current onnxruntime
EXPORTER = "torch.onnx.export(dynamo=False)"  # TorchScript tracing: no onnxscript needed
INPUT_NAME = "image"
GROUP_NAMES = ("cls_score", "bbox_pred")  # a head's first two output groups; others: extra<g>
# Parity tolerances: ONNX Runtime must reproduce PyTorch's numbers to within these.
RAW_ATOL = 1e-3  # raw head outputs (logits, box deltas)
BOX_ATOL = 1e-2  # final boxes, pixels of the original image
SCORE_ATOL = 1e-4  # final scores
AP_ATOL = 0.1  # COCO box AP over the whole split, percentage points
PROVIDERS = ("CPUExecutionProvider",)


def record_path(out: str | Path) -> Path:
    """The JSON record written beside an exported file: `model.onnx` -> `model.onnx.json`."""
    out = Path(out)
    return out.with_name(out.name + ".json")


def check_supported(cfg: Any, model_config: str) -> None:
    """Refuses, before any weights are read, a detector whose inference is not one graph call
    plus its head's `predict_by_feat`: two-stage detectors (RoI ops between stages), DETRs and
    instance segmentors each need their own split between graph and postprocessing."""
    from mmdet.models.detectors import SingleStageDetector
    from mmdet.registry import MODELS

    kind = cfg.model.get("type")
    cls = MODELS.get(kind) if isinstance(kind, str) else kind
    if (not isinstance(cls, type) or not issubclass(cls, SingleStageDetector)
            or not cfg.model.get("bbox_head")):
        name = getattr(cls, "__name__", kind)
        raise ModelConfigError(
            f"model config {model_config} is a {name}, which mtpd export does not support; it "
            "exports single-stage dense detectors only (an mmdet SingleStageDetector with a "
            "bbox_head, e.g. RetinaNet)")


def _group_name(g: int) -> str:
    return GROUP_NAMES[g] if g < len(GROUP_NAMES) else f"extra{g}"


def flatten_outputs(outs: Any, model_config: str) -> tuple[list[Any], list[str]]:
    """A head's output groups (per-level lists, or single tensors) as flat tensors and their
    ONNX names: `cls_score_0..L-1`, `bbox_pred_0..L-1`, `extra2_0..`; a single tensor keeps
    its group's bare name. `regroup` inverts it from the names alone."""
    import torch

    tensors, names = [], []
    for g, group in enumerate(outs if isinstance(outs, (tuple, list)) else (outs,)):
        if isinstance(group, torch.Tensor):
            tensors.append(group)
            names.append(_group_name(g))
            continue
        if not isinstance(group, (tuple, list)) or not all(
                isinstance(t, torch.Tensor) for t in group):
            raise ModelConfigError(
                f"model config {model_config}: its bbox_head returns {type(group).__name__} "
                f"as output group {g}, not tensors; mtpd export needs a head whose forward "
                "returns tensors or lists of tensors (e.g. RetinaHead)")
        for i, t in enumerate(group):
            tensors.append(t)
            names.append(f"{_group_name(g)}_{i}")
    return tensors, names


def regroup(names: list[str], arrays: list[Any]) -> tuple[Any, ...]:
    """The head's output groups, in order, from flat named outputs (`flatten_outputs`' names):
    what `predict_by_feat(*groups, ...)` takes."""
    groups: dict[str, Any] = {}
    for name, value in zip(names, arrays, strict=True):
        m = re.fullmatch(r"(.+)_(\d+)", name)  # group names never end in _<digits>
        if m:
            groups.setdefault(m.group(1), []).append((int(m.group(2)), value))
        else:
            groups[name] = value
    return tuple([v for _, v in sorted(g, key=lambda p: p[0])] if isinstance(g, list) else g
                 for g in groups.values())


def dynamic_axes(output_names: list[str], output_ranks: list[int]) -> dict[str, dict[int, str]]:
    """Batch, height and width of the image and of every 4-D output are dynamic: one file
    serves any batch size and any padded input size."""
    axes = {INPUT_NAME: {0: "batch", 2: "height", 3: "width"}}
    for name, rank in zip(output_names, output_ranks, strict=True):
        axes[name] = ({0: "batch", 2: f"{name}_height", 3: f"{name}_width"} if rank == 4
                      else {0: "batch"})
    return axes


class OnnxDetector:
    """An exported detector run with onnxruntime: the pre- and postprocessing the graph leaves
    out, so that `predict(batch)` returns the same `DetDataSample`s as `model.test_step(batch)`.

    Preprocessing is the config's test pipeline (`dataloader()`, for `split` of the manifest)
    and the model's `data_preprocessor` (BGR->RGB, normalise, pad, batch); postprocessing is
    the head's own `predict_by_feat(..., rescale=True)` (score threshold, top-k, NMS, boxes in
    pixels of the original image). The detector object is built from `model_config` without
    weights: only its data preprocessor and its head's postprocessing run, and they hold no
    learnt parameters (backbone and neck are dropped).
    """

    def __init__(self, model_config: str, onnx_path: str | Path, manifest_path: str | Path,
                 split: str, *, input_size: tuple[int, int] | None = None,
                 providers: tuple[str, ...] = PROVIDERS, num_workers: int = 0) -> None:
        import onnxruntime as ort

        from mtpd.data.checked import load_checked
        from mtpd.model_config import build_job_config, build_model
        from mtpd.registry import register_all_modules

        register_all_modules()
        manifest = load_checked(manifest_path)
        self.cfg = build_job_config(model_config, manifest, train_split=None, test_split=split,
                                    num_workers=num_workers, input_size=input_size)
        check_supported(self.cfg, model_config)
        model = build_model(self.cfg.model, model_config)
        model.backbone = None  # never run: the ONNX graph replaces them
        if getattr(model, "neck", None) is not None:
            model.neck = None
        self.model = model.eval()
        self.session = ort.InferenceSession(str(onnx_path), providers=list(providers))
        self.input_name = self.session.get_inputs()[0].name
        self.output_names = [o.name for o in self.session.get_outputs()]

    def dataloader(self) -> Any:
        """The config's test dataloader over the split, in file order (no shuffling)."""
        from mmengine.runner import Runner

        loader_cfg = self.cfg.test_dataloader
        loader_cfg["sampler"] = dict(type="DefaultSampler", shuffle=False, round_up=False)
        return Runner.build_dataloader(loader_cfg)

    def preprocess(self, batch: dict) -> tuple[Any, list]:
        """A dataloader batch as the graph's input array (N, 3, H, W float32) and its samples,
        whose metainfo (scale factor, shapes) postprocessing needs."""
        import torch

        with torch.no_grad():
            data = self.model.data_preprocessor(batch, False)
        return data["inputs"].float().cpu().numpy(), data["data_samples"]

    def run(self, image: Any) -> list[Any]:
        """The graph's outputs (numpy arrays, in `output_names` order) for a preprocessed batch."""
        return self.session.run(self.output_names, {self.input_name: image})

    def postprocess(self, outputs: list[Any], data_samples: list) -> list:
        """`data_samples` with `pred_instances` set from raw head outputs, as the head's
        `predict` and the detector's `add_pred_to_datasample` do in PyTorch."""
        import torch

        groups = regroup(self.output_names, [torch.from_numpy(o) for o in outputs])
        metas = [s.metainfo for s in data_samples]
        with torch.no_grad():
            results = self.model.bbox_head.predict_by_feat(*groups, batch_img_metas=metas,
                                                           rescale=True)
        return self.model.add_pred_to_datasample(data_samples, results)

    def predict(self, batch: dict) -> list:
        """Detections of a dataloader batch: one DetDataSample per image."""
        image, samples = self.preprocess(batch)
        return self.postprocess(self.run(image), samples)


def _graph_module(model: Any, model_config: str) -> Any:
    """What is traced: preprocessed image -> the head's outputs, flattened (the Module class is
    made here so that importing this module does not import torch)."""
    import torch

    class HeadGraph(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.detector = model

        def forward(self, image: torch.Tensor) -> tuple[torch.Tensor, ...]:
            return tuple(flatten_outputs(self.detector._forward(image), model_config)[0])

    return HeadGraph().eval()


def _example(model: Any, cfg: Any, model_config: str) -> tuple[Any, list[str], list[int]]:
    """The first preprocessed image of the split, to trace with, and the names and ranks of
    the graph's outputs on it."""
    import torch
    from mmengine.runner import Runner

    batch = next(iter(Runner.build_dataloader(cfg.test_dataloader)))
    with torch.no_grad():
        image = model.data_preprocessor(batch, False)["inputs"][:1].float()
        tensors, names = flatten_outputs(model._forward(image), model_config)
    return image.numpy(), names, [t.dim() for t in tensors]


def _max_diff(a: Any, b: Any) -> float:
    import numpy as np

    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    return float(np.abs(a - b).max()) if a.size else 0.0


def compare_detections(ref: Any, got: Any) -> dict[str, Any]:
    """Max box (px) and score differences of two images' detections, ordered by score; None
    differences and `same` False when their numbers or labels differ."""
    import numpy as np

    def arrays(inst: Any) -> tuple[Any, Any, Any]:
        scores = inst.scores.detach().cpu().numpy()
        order = np.argsort(-scores, kind="stable")
        return (inst.bboxes.detach().cpu().numpy()[order], scores[order],
                inst.labels.detach().cpu().numpy()[order])

    (rb, rs, rl), (gb, gs, gl) = arrays(ref.pred_instances), arrays(got.pred_instances)
    if len(rs) != len(gs) or not np.array_equal(rl, gl):
        return {"same": False, "count": (len(rs), len(gs)), "box": None, "score": None}
    return {"same": True, "count": (len(rs), len(gs)), "box": _max_diff(rb, gb),
            "score": _max_diff(rs, gs)}


def parity(model: Any, detector: OnnxDetector, gt_file: Path, parity_images: int,
           model_config: str) -> dict[str, Any]:
    """PyTorch vs onnxruntime on the split: raw outputs and detections of the first
    `parity_images` images, and COCO box AP of both on every image."""
    import torch

    from mtpd.data.manifest import read_annotation_file
    from mtpd.evaluate import coco_eval, to_coco_results

    graph = _graph_module(model, model_config)
    cat_ids = sorted(c["id"] for c in read_annotation_file(gt_file)["categories"])
    raw = box = score = 0.0
    compared, detections, mismatches = 0, 0, []
    torch_res: list[dict] = []
    onnx_res: list[dict] = []
    for batch in detector.dataloader():
        with torch.no_grad():
            ref_samples = model.test_step(batch)
        image, samples = detector.preprocess(batch)
        outputs = detector.run(image)
        got_samples = detector.postprocess(outputs, samples)
        take = min(parity_images - compared, len(got_samples))
        if take > 0:
            with torch.no_grad():
                ref_raw = graph(torch.from_numpy(image[:take]))
            raw = max([raw] + [_max_diff(r.numpy(), o[:take]) for r, o in zip(ref_raw, outputs,
                                                                               strict=True)])
            for ref, got in zip(ref_samples[:take], got_samples[:take], strict=True):
                d = compare_detections(ref, got)
                detections += d["count"][0]
                if not d["same"]:
                    mismatches.append(f"image {ref.img_id}: {d['count'][0]} vs "
                                      f"{d['count'][1]} detections")
                else:
                    box, score = max(box, d["box"]), max(score, d["score"])
            compared += take
        for ref, got in zip(ref_samples, got_samples, strict=True):
            torch_res += to_coco_results(ref, cat_ids)[0]
            onnx_res += to_coco_results(got, cat_ids)[0]
    ap_torch = coco_eval(gt_file, torch_res)["AP"]
    ap_onnx = coco_eval(gt_file, onnx_res)["AP"]
    return {"images": compared, "detections": detections,
            "same_detections": not mismatches, "mismatches": mismatches[:5],
            "max_abs_diff_raw": raw, "max_abs_diff_box_px": box, "max_abs_diff_score": score,
            "AP_pytorch": ap_torch, "AP_onnx": ap_onnx,
            "AP_diff": round(abs(ap_torch - ap_onnx), 3),
            "split_detections": {"pytorch": len(torch_res), "onnx": len(onnx_res)},
            "tolerances": {"raw": RAW_ATOL, "box_px": BOX_ATOL, "score": SCORE_ATOL,
                           "AP": AP_ATOL}}


def parity_failures(p: dict[str, Any]) -> list[str]:
    """What in a parity result is out of tolerance, as short phrases (empty: it passes)."""
    fails = []
    if p["max_abs_diff_raw"] > RAW_ATOL:
        fails.append(f"raw outputs differ by {p['max_abs_diff_raw']:.3g} (> {RAW_ATOL})")
    if not p["same_detections"]:
        fails.append("different detections (" + "; ".join(p["mismatches"]) + ")")
    if p["max_abs_diff_box_px"] > BOX_ATOL:
        fails.append(f"boxes differ by {p['max_abs_diff_box_px']:.3g} px (> {BOX_ATOL})")
    if p["max_abs_diff_score"] > SCORE_ATOL:
        fails.append(f"scores differ by {p['max_abs_diff_score']:.3g} (> {SCORE_ATOL})")
    if p["AP_diff"] > AP_ATOL:
        fails.append(f"box AP {p['AP_onnx']} vs PyTorch {p['AP_pytorch']} (> {AP_ATOL} apart)")
    return fails


def export_onnx(model_config: str, checkpoint: str | Path, manifest_path: str | Path,
                split: str, out: str | Path, *, parity_images: int = 4,
                input_size: tuple[int, int] | None = None) -> dict[str, Any]:
    """Exports `checkpoint` (a single-stage detector of `model_config`) to ONNX at `out`, with
    its record at `record_path(out)`; returns the record.

    The model is built as evaluation builds it (`build_test_model`, on the CPU), traced on one
    preprocessed image of `split`, and checked on that split against PyTorch (`parity`). Both
    files appear only if every tolerance holds: otherwise `MtpdError` and nothing is written.
    """
    import onnx
    import onnxruntime
    import torch

    from mtpd.data.checked import load_checked
    from mtpd.evaluate import build_test_model
    from mtpd.io import atomic_path, atomic_write_json, sha256sum
    from mtpd.model_config import build_job_config, to_plain
    from mtpd.registry import register_all_modules

    if parity_images < 1:
        raise MtpdError(f"--parity-images {parity_images}: compare at least 1 image")
    register_all_modules()
    manifest = load_checked(manifest_path)
    check_supported(build_job_config(model_config, manifest, train_split=None, test_split=split,
                                     num_workers=0, input_size=input_size), model_config)
    model, cfg = build_test_model(model_config, checkpoint, manifest, split, "cpu",
                                  num_workers=0, input_size=input_size)
    out = Path(out)
    with atomic_path(out) as tmp:
        image, names, ranks = _example(model, cfg, model_config)
        axes = dynamic_axes(names, ranks)
        t0 = time.perf_counter()
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore", DeprecationWarning)  # the exporter is "legacy"
            torch.onnx.export(_graph_module(model, model_config), (torch.from_numpy(image),),
                              str(tmp), input_names=[INPUT_NAME], output_names=names,
                              dynamic_axes=axes, opset_version=OPSET, dynamo=False)
        onnx.checker.check_model(str(tmp))
        seconds = time.perf_counter() - t0
        detector = OnnxDetector(model_config, tmp, manifest_path, split, input_size=input_size)
        p = parity(model, detector, manifest.split(split).ann_file, parity_images, model_config)
        fails = parity_failures(p)
        if fails:
            raise MtpdError(f"ONNX export of {checkpoint} ({model_config}) fails its parity "
                            f"check on '{split}': {'; '.join(fails)}; nothing written")
        record = {
            "config": str(model_config), "checkpoint": str(checkpoint),
            "dataset": str(manifest_path), "split": split, "onnx": str(out),
            "sha256": sha256sum(tmp), "opset": OPSET, "exporter": EXPORTER,
            "input_names": [INPUT_NAME], "output_names": names, "dynamic_axes": axes,
            "traced_input_shape": list(image.shape),
            "input_size": list(input_size) if input_size else None,
            "data_preprocessor": to_plain(cfg.model.get("data_preprocessor")),
            "postprocessing": "mtpd.export.OnnxDetector: test pipeline + data_preprocessor "
                              "before, bbox_head.predict_by_feat(rescale=True) after",
            "export_seconds": round(seconds, 3),
            "versions": {"torch": torch.__version__, "onnx": onnx.__version__,
                         "onnxruntime": onnxruntime.__version__},
            "parity": p,
        }
        atomic_write_json(record_path(out), record)  # the record first: out implies it
    log.info("exported %s to %s in %.1f s; box AP %s (PyTorch %s)", checkpoint, out, seconds,
             p["AP_onnx"], p["AP_pytorch"])
    return record
