"""`mtpd` command line: one small entry point per pipeline step, each called by one rule.

Every command ends, on failure, with one line on stderr naming the problem (file, key or value
and how to fix it) and a non-zero exit code; `--debug` shows the traceback instead. Modules
are imported inside the commands, so the cheap local steps (`mtpd bgs`, `mtpd tables`) never
import torch.
"""
from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path
from typing import Any

from mtpd.errors import MtpdError, one_line


def _json_arg(text: str) -> dict:
    """A JSON object given inline or as @file."""
    try:
        if text.startswith("@"):
            text = Path(text[1:]).read_text()
        value = json.loads(text)
    except OSError as e:
        raise argparse.ArgumentTypeError(f"cannot read {text[1:]}: {e.strerror}") from e
    except json.JSONDecodeError as e:
        raise argparse.ArgumentTypeError(f"not a JSON object: {e}") from e
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError("expected a JSON object")
    return value


def _names(text: str) -> list[str]:
    return [t for t in text.split(",") if t]


def _size(text: str) -> tuple[int, int]:
    """WIDTHxHEIGHT, e.g. 960x600."""
    try:
        w, h = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not WIDTHxHEIGHT (e.g. 960x600)") from None
    return w, h


def _stage_of(text: str) -> tuple[int, int]:
    """I/N: stage I of N."""
    try:
        i, n = (int(v) for v in text.split("/"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not I/N (e.g. 2/3)") from None
    return i, n


def _snapshot(text: str) -> tuple[int, str]:
    """EPOCH:PATH."""
    epoch, sep, path = text.partition(":")
    if not sep or not epoch.isdigit() or not path:
        raise argparse.ArgumentTypeError(f"{text!r} is not EPOCH:PATH") from None
    return int(epoch), path


def _default(key: str, value: Any) -> Any:
    """A value given on the command line, else the pipeline schema's default for `key`."""
    if value is not None:
        return value
    from mtpd.pipeline_config import default

    return default(key)


def cmd_data_shapes(a: argparse.Namespace) -> None:
    from mtpd.data.shapes import ShapesSpec, generate

    given = {k: getattr(a, k) for k in ShapesSpec.SETTINGS if getattr(a, k) is not None}
    generate(a.out, ShapesSpec.from_settings(**given))
    print(f"wrote {a.out}/dataset.json")


def cmd_data_manifest(a: argparse.Namespace) -> None:
    from mtpd.data.manifest import WHERE_TO_GET, DatasetManifest, write_manifest
    from mtpd.errors import DatasetError

    splits = {}
    for item in a.split:
        try:
            name, ann, img = item.split(":", 2)
        except ValueError:
            raise DatasetError(f"--split '{item}' must be NAME:ANN_FILE:IMG_DIR") from None
        splits[name] = {"ann_file": ann, "img_dir": img}
    m_path = Path(a.out)
    write_manifest(m_path, a.name, a.data_root, splits)
    m = DatasetManifest.load(m_path)
    for name, split in m.splits.items():  # every declared file and directory must exist
        missing = [str(p) for p in (split.ann_file, split.img_dir) if not p.exists()]
        if missing:
            m_path.unlink()
            raise DatasetError(f"split '{name}' of dataset '{a.name}': {', '.join(missing)} "
                               f"not found; {WHERE_TO_GET['coco']}, or fix dataset.coco in the "
                               "config")
    print(f"wrote {a.out}: {len(m.classes)} classes, splits {sorted(m.splits)}")


def cmd_data_sequences(a: argparse.Namespace) -> None:
    from mtpd.data.sequences import SequencesSpec, generate_sequences

    given = {k: getattr(a, k) for k in SEQUENCE_SETTINGS if getattr(a, k) is not None}
    generate_sequences(a.out, SequencesSpec.from_settings(**given))
    print(f"wrote {a.out}/dataset.json")


def cmd_data_argoverse(a: argparse.Namespace) -> None:
    from mtpd.data.argoverse import to_coco
    from mtpd.data.manifest import WHERE_TO_GET, write_manifest
    from mtpd.errors import DatasetError

    out_dir = Path(a.out).parent
    splits, source = {}, {}
    for item in a.split:
        name, _, ann = item.partition(":")
        if not ann:
            raise DatasetError(f"--split '{item}' must be NAME:ANN_FILE")
        if not Path(ann).is_file():
            raise DatasetError(f"Argoverse-HD annotation file {ann} (split '{name}') not found; "
                               f"{WHERE_TO_GET['argoverse']}, or fix the config's paths")
        info = to_coco(ann, out_dir / f"{name}.coco.json", data_root_hint=a.data_root)
        print(f"{name}: {info['images']} frames of {info['sequences']} sequences")
        splits[name] = {"ann_file": str((out_dir / f"{name}.coco.json").resolve()),
                        "img_dir": str(Path(a.data_root).resolve())}
        source[name] = ann
    write_manifest(a.out, a.name, "/", splits,
                   source={"data_root": a.data_root, "splits": source})


def cmd_data_carve(a: argparse.Namespace) -> None:
    from mtpd.data.carve import carve

    info = carve(a.dataset, a.out, proxy_images=a.proxy_images, train_images=a.train_images,
                 seed=a.seed, split=a.split)
    print(f"proxy: {info['proxy_images']} images; proxy_train: {info['proxy_train_images']}")


def cmd_data_check(a: argparse.Namespace) -> None:
    from mtpd.data.validate import validate_dataset

    report = validate_dataset(a.dataset, a.out, drop_bad_boxes=a.drop_bad_boxes)
    for name, split in report["splits"].items():
        cached = " (cached)" if split["cached"] else ""
        print(f"{name}: {split['images']} images, {split['annotations']} annotations, "
              f"{split['dropped_boxes']} boxes dropped{cached}")
        for fix in split["fixes"]:
            print(f"  fixed in {split['ann_file']}: {fix}")


def cmd_pretrain(a: argparse.Namespace) -> None:
    _devices(a, parallel=False)
    from mtpd.pretrain import pretrain_backbone

    pretrain_backbone(a.config, a.dataset, a.out, epochs=_default("pretrain.epochs", a.epochs),
                      crop_size=_default("pretrain.crop_size", a.crop_size),
                      seed=_default("pretrain.seed", a.seed))


def cmd_fetch(a: argparse.Namespace) -> None:
    from mtpd.checkpoint import fetch_checkpoint

    fetch_checkpoint(a.source, a.out, a.sha256 or None, allow_http=a.allow_http)
    print(f"wrote {a.out}")


def _devices(a: argparse.Namespace, parallel: bool) -> Any:
    """With --gpus N, the devices this job runs on (`mtpd.devices`), CUDA_VISIBLE_DEVICES set
    before anything starts CUDA; call it before importing torch or mmdet. None without --gpus,
    or in one of the processes `_in_processes` started (the devices are assigned once)."""
    from mtpd.distributed import is_child

    if getattr(a, "gpus", None) is None or is_child():
        return None
    from mtpd.devices import assign, describe

    job = assign(a.gpus, parallel=parallel)
    logging.getLogger("mtpd.devices").info(describe(job))
    return job


def _in_processes(a: argparse.Namespace) -> bool:
    """Runs this same command as one process per device of the job (--gpus N), or as N CPU
    processes (--nproc N); True once they are done, False when this process does the work."""
    from mtpd.distributed import relaunch

    job = _devices(a, parallel=True)
    nproc = job.processes if job else a.nproc
    code = relaunch(nproc, a.argv, tuple(job.locks) if job else ())
    if code is None:
        return False
    if code:
        raise RuntimeError(f"{nproc} processes of 'mtpd {a.command}' failed (exit code "
                           f"{code}); the first error is in the log above")
    return True


def cmd_train(a: argparse.Namespace) -> None:
    if _in_processes(a):
        return
    from mtpd.train import train

    train(a.config, a.dataset, a.out, epochs=a.epochs,
          seed=a.seed if a.seed is not None else _default("train.seeds", None)[0],
          split=a.split, pretrained_backbone=a.pretrained_backbone, init_checkpoint=a.init,
          distill=a.distill, batch_size=a.batch_size, num_workers=a.num_workers,
          feature_loss_split=a.feature_loss_split, checkpoint_minutes=a.checkpoint_minutes,
          input_size=a.input_size, precision=a.precision,
          continue_schedule=a.continue_schedule,
          snapshots=dict(a.snapshot) if a.snapshot else None)


def cmd_evaluate(a: argparse.Namespace) -> None:
    if _in_processes(a):
        return
    from mtpd.evaluate import evaluate

    rec = evaluate(a.config, a.checkpoint, a.dataset, a.out,
                   split=_default("evaluation.split", a.split), predictions=a.predictions,
                   num_workers=a.num_workers, backend=a.backend, input_size=a.input_size,
                   model_classes=a.model_classes, tolerance=a.ap_tolerance or 0.0,
                   expected={k: v for k, v in (("AP", a.expect_box_ap),
                                               ("mask_AP", a.expect_mask_ap)) if v is not None})
    if rec is not None:
        print(json.dumps({k: rec[k] for k in rec if "AP" in k}))


def cmd_export(a: argparse.Namespace) -> None:
    from mtpd.export import export_onnx, record_path

    rec = export_onnx(a.config, a.checkpoint, a.dataset, a.split, a.out,
                      parity_images=a.parity_images, input_size=a.input_size)
    p = rec["parity"]
    print(f"wrote {a.out} and {record_path(a.out)}: box AP {p['AP_onnx']} (PyTorch "
          f"{p['AP_pytorch']}), detections within {p['max_abs_diff_box_px']:.2g} px on "
          f"{p['images']} images, exported in {rec['export_seconds']:.1f} s")


def cmd_stream(a: argparse.Namespace) -> None:
    _devices(a, parallel=False)
    from mtpd.data.argoverse import COCO_CLASSES, class_mapping
    from mtpd.data.manifest import DatasetManifest
    from mtpd.streaming import parse_latency, run_streaming

    latency_text = str(_default("streaming.latency", a.latency))
    if a.network:  # the network's shared timing (mtpd.cost), the same for all its checkpoints
        from mtpd.cost import stream_runtimes

        latency, latency_device = stream_runtimes(latency_text, a.network, a.scale)
    else:
        latency, latency_device = parse_latency(latency_text)
    class_map = (class_mapping(COCO_CLASSES, DatasetManifest.load(a.dataset).classes)
                 if a.model_classes == "coco" else None)
    rec = run_streaming(a.config, a.checkpoint, a.dataset, _default("streaming.split", a.split),
                        a.out, scale=a.scale, latency=latency,
                        perf_factor=_default("streaming.perf_factor", a.perf_factor),
                        seed=a.seed, class_map=class_map, fps=_default("streaming.fps", a.fps),
                        name=a.name, latency_device=latency_device,
                        latency_network=a.network)
    print(f"sAP {rec['sAP']} (offline AP {rec['AP']}) at scale {a.scale} on {rec['device']}")


def cmd_cost(a: argparse.Namespace) -> None:
    _devices(a, parallel=False)
    from mtpd.cost import Network, measure, plan_inputs

    try:
        networks = [Network(**{**n, "members": tuple(n.get("members", ()))})
                    for n in a.networks["networks"]]
    except (KeyError, TypeError) as e:
        raise MtpdError(f"--networks needs {{\"networks\": [{{\"name\", \"config\", "
                        f"\"checkpoint\", ...}}]}} ({e})") from None
    inputs = plan_inputs(a.dataset, a.split, a.stream_dataset, a.stream_split, a.scales or ())
    rec = measure(networks, inputs, a.out, rounds=_default("evaluation.cost.rounds", a.rounds),
                  images=_default("evaluation.cost.images", a.images),
                  warmup=_default("evaluation.cost.warmup", a.warmup), input_size=a.input_size)
    for name, net in rec["networks"].items():
        ev = net["inputs"]["eval"]
        print(f"{name}: {net['params_M']} M parameters, {ev['gflops']} GFLOPs, "
              f"{ev['latency_ms']['median']} ms median on {rec['device']}")


def cmd_tables(a: argparse.Namespace) -> None:
    from mtpd.tables import write_tables

    for path in a.paths:
        done = write_tables(path)
        print(f"wrote the tables of {', '.join(str(p) for p in done)}")


def cmd_bench_report(a: argparse.Namespace) -> None:
    from mtpd.bench import report

    summary = report(a.experiment)
    print(f"wrote {a.experiment}/report.md: " + ", ".join(
        f"{k} {v:.2f}" for k, v in summary.items() if isinstance(v, float)))


def cmd_bench_collect(a: argparse.Namespace) -> None:
    from mtpd.bench import collect

    print(f"copied {collect(a.experiment, a.out)} JSON records into {a.out}")


def cmd_config(a: argparse.Namespace) -> None:
    import yaml

    from mtpd.pipeline_config import load

    completed = load(*a.configfiles)
    print(yaml.safe_dump(completed, sort_keys=False) if a.show else
          f"{', '.join(a.configfiles)}: valid (experiment '{completed['experiment']}')")


def cmd_preflight(a: argparse.Namespace) -> None:
    from mtpd.preflight import preflight

    r = preflight(a.experiment, a.dataset, a.out, input_size=a.input_size)
    print(f"preflight of '{r['experiment']}' passed: {len(r['models'])} models built, "
          f"{len(r['distillation'])} teachers matched to the student"
          f"{' (cached)' if r['cached'] else ''}, {r['seconds']:.1f} s; wrote {a.out}")


def cmd_record(a: argparse.Namespace) -> None:
    from mtpd.io import atomic_write_json

    atomic_write_json(a.out, a.json)


def cmd_bgs_target(a: argparse.Namespace) -> None:
    from mtpd.bgs_steps import write_target

    print(write_target(_names(a.pool), a.target, a.metrics, a.evaluation_split, a.out))


def cmd_bgs_round(a: argparse.Namespace) -> None:
    from mtpd.bgs_steps import write_round

    d = write_round(a.round, _names(a.pool), a.previous, a.metrics, a.proxy, a.margin,
                    a.max_stages, a.evaluation_split, a.out, a.control)
    print(d.reason)


def cmd_bgs_result(a: argparse.Namespace) -> None:
    from mtpd.bgs_steps import write_result

    r = write_result(a.rounds, _names(a.pool), a.max_stages, a.out, a.exhaustive)
    print(" -> ".join(r["order"]))


def cmd_bgs_exhaustive(a: argparse.Namespace) -> None:
    from mtpd.bgs_steps import write_exhaustive

    print(write_exhaustive(a.metrics, a.proxy, a.evaluation_split, a.out)["best"])


def _bgs_parsers(sub: argparse._SubParsersAction) -> None:
    bgs = sub.add_parser("bgs", help="Backward Greedy Selection steps").add_subparsers(
        dest="bgs_command", required=True)

    def step(name: str, help: str, func: Any) -> argparse.ArgumentParser:
        parser = bgs.add_parser(name, help=help)
        parser.add_argument("--out", required=True)
        parser.set_defaults(func=func)
        return parser

    bgs_target = step("target", "fix the last stage's teacher", cmd_bgs_target)
    bgs_target.add_argument("--pool", required=True, help="comma-separated teacher names")
    bgs_target.add_argument("--target", required=True,
                            help="a teacher name, 'best' or 'proxy' (bgs.target)")
    bgs_target.add_argument("--metrics", nargs="*", default=[],
                            help="teachers' proxy-split metrics (best), or their one-stage "
                                 "proxy chains' (proxy)")
    bgs_target.add_argument("--evaluation-split", required=True, help="never scored by BGS")
    bgs_round = step("round", "one round: prepend the best candidate or stop", cmd_bgs_round)
    bgs_round.add_argument("--round", type=int, required=True)
    bgs_round.add_argument("--pool", required=True)
    bgs_round.add_argument("--previous", required=True,
                           help="target JSON (round 1) or previous round")
    bgs_round.add_argument("--metrics", nargs="*", default=[], help="proxy metrics of its chains")
    bgs_round.add_argument("--proxy", required=True, choices=["box_ap", "feature_loss"])
    bgs_round.add_argument("--margin", type=float, required=True)
    bgs_round.add_argument("--max-stages", type=int, required=True)
    bgs_round.add_argument("--evaluation-split", required=True)
    bgs_round.add_argument("--control", required=True, choices=["none", "repeat_first"],
                           help="the bar: the current order, or it with its first teacher repeated")
    bgs_result = step("result", "the chosen order, the round log and the search cost",
                      cmd_bgs_result)
    bgs_result.add_argument("--rounds", nargs="+", required=True)
    bgs_result.add_argument("--pool", required=True)
    bgs_result.add_argument("--max-stages", type=int, required=True)
    bgs_result.add_argument("--exhaustive", help="the exhaustive ranking to include")
    bgs_exhaustive = step("exhaustive", "rank every scored chain", cmd_bgs_exhaustive)
    bgs_exhaustive.add_argument("--metrics", nargs="+", required=True)
    bgs_exhaustive.add_argument("--proxy", required=True, choices=["box_ap", "feature_loss"])
    bgs_exhaustive.add_argument("--evaluation-split", required=True)


def _gpu_arguments(parser: argparse.ArgumentParser, nproc_help: str | None = None) -> None:
    """--gpus (what the rule asked for) and, for commands that run several processes, --nproc
    (CPU processes, no GPU assignment); neither: one process, devices left as they are."""
    runs = "one process per device" if nproc_help else "one process, on the first of the devices"
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--gpus", type=int, metavar="N",
                       help=f"GPUs the job asked for (its rule's gpu resource); runs {runs} it is "
                            "given by SLURM, else claims on this machine (the cluster guide, "
                            "workflow/profiles/slurm/README.md: 'One GPU server'); on the CPU "
                            "with 0, or with no GPU here")
    if nproc_help:
        group.add_argument("--nproc", type=int, default=1, metavar="N", help=nproc_help)


SEQUENCE_SETTINGS = {"num_val": int, "frames": int, "width": int, "height": int,
                     "max_objects": int, "max_speed": float, "still_prob": float, "seed": int,
                     "shapes": str, "textures": str}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mtpd", description=__doc__.splitlines()[0])
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    parser.add_argument("--debug", action="store_true", help="show the traceback of an error")
    sub = parser.add_subparsers(dest="command", required=True)

    data = sub.add_parser("data", help="make or describe datasets").add_subparsers(
        dest="data_command", required=True)
    data_shapes = data.add_parser(
        "shapes", help="generate the embedded synthetic COCO-format dataset "
                       "(defaults: the pipeline schema's dataset.shapes)")
    data_shapes.add_argument("--out", required=True)
    for name, kind in (("num_train", int), ("num_proxy", int), ("num_val", int),
                       ("image_size", int), ("max_objects", int), ("min_size", float),
                       ("shapes", str), ("textures", str), ("seed", int)):
        data_shapes.add_argument(f"--{name.replace('_', '-')}", dest=name, type=kind)
    data_shapes.set_defaults(func=cmd_data_shapes)
    data_manifest = data.add_parser(
        "manifest", help="write a manifest for an existing COCO-format dataset")
    data_manifest.add_argument("--out", required=True)
    data_manifest.add_argument("--name", required=True)
    data_manifest.add_argument("--data-root", required=True)
    data_manifest.add_argument("--split", action="append", required=True,
                               help="NAME:ANN_FILE:IMG_DIR")
    data_manifest.set_defaults(func=cmd_data_manifest)
    data_sequences = data.add_parser(
        "sequences", help="generate video-like sequences in Argoverse-HD's "
                          "layout (defaults: streaming.dataset.sequences)")
    data_sequences.add_argument("--out", required=True)
    for name, kind in SEQUENCE_SETTINGS.items():
        data_sequences.add_argument(f"--{name.replace('_', '-')}", dest=name, type=kind)
    data_sequences.set_defaults(func=cmd_data_sequences)
    data_argoverse = data.add_parser(
        "argoverse", help="convert Argoverse-HD annotations to COCO files and "
                          "write their manifest")
    data_argoverse.add_argument("--out", required=True, help="the manifest to write (dataset.json)")
    data_argoverse.add_argument("--name", required=True)
    data_argoverse.add_argument("--data-root", required=True,
                                help="the directory seq_dirs start from (Argoverse-1.1/tracking)")
    data_argoverse.add_argument("--split", action="append", required=True, help="NAME:ANN_FILE")
    data_argoverse.set_defaults(func=cmd_data_argoverse)
    data_carve = data.add_parser(
        "carve", help="carve BGS's proxy split from the training annotations")
    data_carve.add_argument("--dataset", required=True, help="the dataset's manifest")
    data_carve.add_argument("--out", required=True,
                            help="the manifest with splits proxy, proxy_train")
    data_carve.add_argument("--split", default="train")
    data_carve.add_argument("--proxy-images", type=int, required=True)
    data_carve.add_argument("--train-images", type=int, help="keep this many for proxy_train (all)")
    data_carve.add_argument("--seed", type=int, required=True)
    data_carve.set_defaults(func=cmd_data_carve)
    data_check = data.add_parser(
        "check", help="validate every split of a dataset before training; "
                      "writes the manifest that training reads")
    data_check.add_argument("--dataset", required=True, help="the dataset's manifest")
    data_check.add_argument("--out", required=True, help="checked manifest and report (JSON)")
    data_check.add_argument("--drop-bad-boxes", action="store_true",
                            help="drop non-finite, empty or out-of-image boxes instead of failing")
    data_check.set_defaults(func=cmd_data_check)

    pretrain = sub.add_parser(
        "pretrain", help="pretrain a detector config's backbone on object crops")
    pretrain.add_argument("--config", required=True)
    pretrain.add_argument("--dataset", required=True)
    pretrain.add_argument("--out", required=True)
    pretrain.add_argument("--epochs", type=int, help="default: the schema's pretrain.epochs")
    pretrain.add_argument("--crop-size", type=int)
    pretrain.add_argument("--seed", type=int)
    _gpu_arguments(pretrain)
    pretrain.set_defaults(func=cmd_pretrain)

    fetch = sub.add_parser("fetch", help="download or copy a checkpoint and verify its sha256")
    fetch.add_argument("--source", required=True, help="URL or local path")
    fetch.add_argument("--sha256", help="the whole hash or its first 8+ hex digits")
    fetch.add_argument("--allow-http", action="store_true", help="also fetch plain http:// URLs")
    fetch.add_argument("--out", required=True)
    fetch.set_defaults(func=cmd_fetch)

    train = sub.add_parser("train", help="train a detector, or one distillation stage")
    train.add_argument("--config", required=True, help="file, mmdet::x.py or mtpd::x.py")
    train.add_argument("--dataset", required=True, help="dataset manifest (dataset.json)")
    train.add_argument("--out", required=True, help="checkpoint to write (student only)")
    train.add_argument("--split", default="train")
    train.add_argument("--epochs", type=int, help="default: the model config's own")
    train.add_argument("--seed", type=int)
    train.add_argument("--pretrained-backbone")
    train.add_argument("--init", help="start from this checkpoint (previous stage's student)")
    train.add_argument("--distill", type=_json_arg, help="distillation settings, JSON or @file")
    train.add_argument("--batch-size", type=int)
    train.add_argument("--num-workers", type=int)
    train.add_argument("--feature-loss-split",
                       help="after a distillation stage, store its mean distillation loss on this "
                            "split (BGS's feature proxy)")
    _gpu_arguments(train, "N processes on the CPUs (gloo), no GPU assignment; 0 means 1")
    train.add_argument("--input-size", type=_size, help="WIDTHxHEIGHT of every Resize")
    train.add_argument("--checkpoint-minutes", type=float,
                       help="also save a resumable checkpoint this often (default: the schema's "
                            "compute.checkpoint_minutes)")
    train.add_argument("--precision", choices=["fp32", "fp16", "bf16"],
                       help="fp16/bf16: mixed precision, autocast with fp32 weights (fp16 needs "
                            "CUDA); default: the schema's train.precision")
    train.add_argument("--continue-schedule", type=_stage_of, metavar="I/N",
                       help="train stage I of one LR schedule over N stages of --epochs each "
                            "(distill.continued_orders)")
    train.add_argument("--snapshot", type=_snapshot, action="append", metavar="EPOCH:PATH",
                       help="also write the weights after EPOCH to PATH (teachers.*.snapshots)")
    train.set_defaults(func=cmd_train)

    evaluate = sub.add_parser("evaluate", help="COCO AP of a checkpoint on a split")
    evaluate.add_argument("--config", required=True)
    evaluate.add_argument("--checkpoint", required=True)
    evaluate.add_argument("--dataset", required=True)
    evaluate.add_argument("--split")
    evaluate.add_argument("--out", required=True)
    evaluate.add_argument("--predictions")
    evaluate.add_argument("--num-workers", type=int)
    _gpu_arguments(evaluate, "N CPU processes (gloo), each evaluating a share of the images")
    evaluate.add_argument("--backend", choices=["faster_coco_eval", "pycocotools"],
                          help="COCO evaluator (default: the schema's evaluation.backend)")
    evaluate.add_argument("--input-size", type=_size, help="WIDTHxHEIGHT of every Resize")
    evaluate.add_argument("--model-classes", choices=["dataset", "coco"], default="dataset",
                          help="coco: a COCO-80 model, its labels mapped to the dataset's classes")
    evaluate.add_argument("--expect-box-ap", type=float,
                          help="the box AP the checkpoint is recorded with: stop if far below")
    evaluate.add_argument("--expect-mask-ap", type=float)
    evaluate.add_argument("--ap-tolerance", type=float, help="points below the expected AP allowed")
    evaluate.set_defaults(func=cmd_evaluate)

    export = sub.add_parser("export", help="export a single-stage detector to ONNX, checked "
                                           "against PyTorch on a split (mtpd.export)")
    export.add_argument("--config", required=True)
    export.add_argument("--checkpoint", required=True)
    export.add_argument("--dataset", required=True, help="dataset manifest (dataset.json)")
    export.add_argument("--split", required=True, help="traced on and checked against")
    export.add_argument("--out", required=True, help="the ONNX file; its record: OUT.json")
    export.add_argument("--parity-images", type=int, default=4,
                        help="images whose raw outputs and detections are compared (AP: all)")
    export.add_argument("--input-size", type=_size, help="WIDTHxHEIGHT of every Resize")
    export.set_defaults(func=cmd_export)

    _bgs_parsers(sub)

    stream = sub.add_parser("stream", help="streaming AP of a checkpoint on video sequences at one "
                                           "input scale, in simulated real time")
    stream.add_argument("--config", required=True)
    stream.add_argument("--checkpoint", required=True)
    stream.add_argument("--dataset", required=True, help="manifest of the sequences")
    stream.add_argument("--split", help="default: the schema's streaming.split")
    stream.add_argument("--out", required=True)
    stream.add_argument("--scale", type=float, required=True,
                        help="input size as a fraction of the native frame size")
    stream.add_argument("--latency",
                        help="measured, seconds per frame, or a runtime record (JSON) to draw from")
    stream.add_argument("--perf-factor", type=float, help="runtimes are divided by this")
    stream.add_argument("--fps", type=float)
    stream.add_argument("--seed", type=int, required=True, help="seeds the runtimes drawn")
    stream.add_argument("--name", help="the model's name in streaming tables")
    stream.add_argument("--model-classes", choices=["dataset", "coco"], default="dataset")
    stream.add_argument("--network", help="simulate with this network's shared timing: --latency "
                                          "is then a cost record (mtpd cost)")
    _gpu_arguments(stream)
    stream.set_defaults(func=cmd_stream)

    cost = sub.add_parser("cost", help="parameters, GFLOPs and one latency per network, timed "
                                       "together (interleaved) on this device")
    cost.add_argument("--networks", type=_json_arg, required=True,
                      help='{"networks": [{"name", "config", "checkpoint", "classes", '
                           '"members"}]}, inline or @file')
    cost.add_argument("--dataset", required=True, help="manifest of the evaluation data")
    cost.add_argument("--split", required=True, help="the evaluation split")
    cost.add_argument("--input-size", type=_size, help="the evaluation's input size, WxH")
    cost.add_argument("--stream-dataset", help="manifest of the sequences (streaming)")
    cost.add_argument("--stream-split")
    cost.add_argument("--scales", type=lambda t: [float(v) for v in _names(t)],
                      help="streaming scales, e.g. 0.5,1.0")
    cost.add_argument("--rounds", type=int)
    cost.add_argument("--images", type=int, help="images per network and input in each round")
    cost.add_argument("--warmup", type=int)
    cost.add_argument("--out", required=True)
    _gpu_arguments(cost)
    cost.set_defaults(func=cmd_cost)

    tables = sub.add_parser("tables", help="result tables and plots from results/ alone")
    tables.add_argument("paths", nargs="+", metavar="PATH",
                        help="an experiment directory (results/<experiment>) or a results root")
    tables.set_defaults(func=cmd_tables)

    bench = sub.add_parser("bench", help="the accuracy benchmark").add_subparsers(
        dest="bench_command", required=True)
    bench_report = bench.add_parser(
        "report", help="progressive vs direct and BGS's rank, over seeds")
    bench_report.add_argument("experiment",
                              help="the benchmark's experiment directory (results/bench)")
    bench_report.set_defaults(func=cmd_bench_report)
    bench_collect = bench.add_parser(
        "collect", help="copy an experiment's JSON records (no checkpoints) to commit them")
    bench_collect.add_argument("experiment", help="the experiment directory (results/bench)")
    bench_collect.add_argument("out", help="a results root to copy into (benchmarks/results)")
    bench_collect.set_defaults(func=cmd_bench_collect)

    config = sub.add_parser("config", help="validate pipeline config files (merged as Snakemake "
                                           "merges several --configfile), without running anything")
    config.add_argument("configfiles", nargs="+", metavar="CONFIG")
    config.add_argument("--show", action="store_true", help="print the completed config")
    config.set_defaults(func=cmd_config)

    preflight = sub.add_parser(
        "preflight", help="build every model of an experiment and check its "
                          "weights and FPN levels, before any training job")
    preflight.add_argument("--experiment", nargs="+", required=True, metavar="CONFIG",
                           help="the run's experiment.json, or pipeline config files "
                                "(merged in order)")
    preflight.add_argument("--dataset", required=True,
                           help="dataset manifest (its classes are used)")
    preflight.add_argument("--out", required=True, help="the report to write (JSON)")
    preflight.add_argument("--input-size", type=_size,
                           help="WIDTHxHEIGHT, as the training jobs get")
    preflight.set_defaults(func=cmd_preflight)

    record = sub.add_parser("record", help="write a JSON object to a file, atomically")
    record.add_argument("--out", required=True)
    record.add_argument("--json", required=True, type=_json_arg)
    record.set_defaults(func=cmd_record)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    args.argv = argv
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(asctime)s %(name)s %(levelname)s %(message)s")
    where = " ".join(x for x in (args.command, getattr(args, f"{args.command}_command", None))
                     if x)
    try:
        args.func(args)
    except Exception as e:
        if args.debug:
            raise
        print(f"mtpd {where}: error: {one_line(e)}", file=sys.stderr)
        return 2 if isinstance(e, (MtpdError, OSError)) else 1
    return 0
