"""`mtpd` command line: one small entry point per pipeline step, each called by one rule."""
from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

from mtpd.checkpoint import CheckpointError
from mtpd.config import ConfigError
from mtpd.data.manifest import ManifestError

USER_ERRORS = (ManifestError, ConfigError, CheckpointError, FileNotFoundError, ValueError)


def _json_arg(text: str) -> dict:
    """A JSON object given inline or as @file."""
    if text.startswith("@"):
        text = Path(text[1:]).read_text()
    try:
        value = json.loads(text)
    except json.JSONDecodeError as e:
        raise argparse.ArgumentTypeError(f"not a JSON object: {e}") from e
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError("expected a JSON object")
    return value


def cmd_data_shapes(a: argparse.Namespace) -> None:
    from mtpd.data.shapes import ShapesSpec, generate

    spec = ShapesSpec(num_train=a.num_train, num_proxy=a.num_proxy, num_val=a.num_val,
                      image_size=a.image_size, max_objects=a.max_objects, min_size=a.min_size,
                      shapes=tuple(a.shapes.split(",")), textures=tuple(a.textures.split(",")),
                      seed=a.seed)
    generate(a.out, spec)
    print(f"wrote {a.out}/dataset.json")


def cmd_data_manifest(a: argparse.Namespace) -> None:
    from mtpd.data.manifest import DatasetManifest, write_manifest

    splits = {}
    for item in a.split:
        try:
            name, ann, img = item.split(":", 2)
        except ValueError:
            raise ValueError(f"--split '{item}' must be NAME:ANN_FILE:IMG_DIR") from None
        splits[name] = {"ann_file": ann, "img_dir": img}
    write_manifest(a.out, a.name, a.data_root, splits)
    m = DatasetManifest.load(a.out)
    for name in m.splits:
        m.split(name)  # every declared annotation file must exist
    print(f"wrote {a.out}: {len(m.classes)} classes, splits {sorted(m.splits)}")


def cmd_pretrain(a: argparse.Namespace) -> None:
    from mtpd.pretrain import pretrain_backbone

    pretrain_backbone(a.config, a.dataset, a.out, epochs=a.epochs, crop_size=a.crop_size,
                      seed=a.seed)


def cmd_fetch(a: argparse.Namespace) -> None:
    from mtpd.checkpoint import fetch_checkpoint

    fetch_checkpoint(a.source, a.out, a.sha256)
    print(f"wrote {a.out}")


def cmd_train(a: argparse.Namespace) -> None:
    from mtpd.train import train

    train(a.config, a.dataset, a.out, epochs=a.epochs, seed=a.seed, split=a.split,
          pretrained_backbone=a.pretrained_backbone, init_checkpoint=a.init,
          distill=a.distill, batch_size=a.batch_size, num_workers=a.num_workers, lr=a.lr,
          meta=a.meta, feature_loss_split=a.feature_loss_split)


def cmd_evaluate(a: argparse.Namespace) -> None:
    from mtpd.evaluate import evaluate

    rec = evaluate(a.config, a.checkpoint, a.dataset, a.out, split=a.split,
                   predictions=a.predictions, num_workers=a.num_workers, extra=a.meta)
    print(json.dumps({k: rec[k] for k in rec if "AP" in k}))


def cmd_tables(a: argparse.Namespace) -> None:
    from mtpd.tables import write_tables

    write_tables(a.metrics, a.out_dir, bgs=a.bgs)


def _names(text: str) -> list[str]:
    return [t for t in text.split(",") if t]


def cmd_bgs_target(a: argparse.Namespace) -> None:
    from mtpd.bgs_cli import write_target

    print(write_target(_names(a.pool), a.target, a.metrics, a.proxy, a.out))


def cmd_bgs_round(a: argparse.Namespace) -> None:
    from mtpd.bgs_cli import write_round

    d = write_round(a.round, _names(a.pool), a.previous, a.metrics or [], a.proxy, a.margin,
                    a.max_stages, a.out)
    print(d.reason)


def cmd_bgs_result(a: argparse.Namespace) -> None:
    from mtpd.bgs_cli import write_result

    r = write_result(a.rounds, _names(a.pool), a.max_stages, a.out, a.exhaustive)
    print(" -> ".join(r["order"]))


def cmd_bgs_exhaustive(a: argparse.Namespace) -> None:
    from mtpd.bgs_cli import write_exhaustive

    print(write_exhaustive(a.metrics, a.proxy, a.out)["best"])


def _bgs_parsers(sub: argparse._SubParsersAction) -> None:
    bgs = sub.add_parser("bgs", help="Backward Greedy Selection steps").add_subparsers(
        dest="bgs_command", required=True)
    s = bgs.add_parser("target", help="fix the last stage's teacher")
    s.add_argument("--pool", required=True, help="comma-separated teacher names")
    s.add_argument("--target", required=True, help="a teacher name, or 'best'")
    s.add_argument("--metrics", nargs="*", default=[], help="teachers' proxy-split metrics")
    s.add_argument("--proxy", default="box_ap")
    s.add_argument("--out", required=True)
    s.set_defaults(func=cmd_bgs_target)
    s = bgs.add_parser("round", help="one round: prepend the best candidate or stop")
    s.add_argument("--round", type=int, required=True)
    s.add_argument("--pool", required=True)
    s.add_argument("--previous", required=True, help="target JSON (round 1) or previous round")
    s.add_argument("--metrics", nargs="*", help="proxy metrics of this round's chains")
    s.add_argument("--proxy", default="box_ap")
    s.add_argument("--margin", type=float, default=0.0)
    s.add_argument("--max-stages", type=int, required=True)
    s.add_argument("--out", required=True)
    s.set_defaults(func=cmd_bgs_round)
    s = bgs.add_parser("result", help="the chosen order, the round log and the search cost")
    s.add_argument("--rounds", nargs="+", required=True)
    s.add_argument("--pool", required=True)
    s.add_argument("--max-stages", type=int, required=True)
    s.add_argument("--exhaustive")
    s.add_argument("--out", required=True)
    s.set_defaults(func=cmd_bgs_result)
    s = bgs.add_parser("exhaustive", help="rank every scored chain")
    s.add_argument("--metrics", nargs="+", required=True)
    s.add_argument("--proxy", default="box_ap")
    s.add_argument("--out", required=True)
    s.set_defaults(func=cmd_bgs_exhaustive)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="mtpd", description=__doc__)
    p.add_argument("-v", "--verbose", action="store_true")
    sub = p.add_subparsers(dest="command", required=True)

    data = sub.add_parser("data", help="make or describe datasets").add_subparsers(
        dest="data_command", required=True)
    s = data.add_parser("shapes", help="generate the embedded synthetic COCO-format dataset")
    s.add_argument("--out", required=True)
    s.add_argument("--num-train", type=int, default=800)
    s.add_argument("--num-proxy", type=int, default=160)
    s.add_argument("--num-val", type=int, default=200)
    s.add_argument("--image-size", type=int, default=128)
    s.add_argument("--max-objects", type=int, default=6)
    s.add_argument("--min-size", type=float, default=6.0)
    s.add_argument("--shapes", default="disk,square,triangle,cross")
    s.add_argument("--textures", default="solid,stripes,checker")
    s.add_argument("--seed", type=int, default=0)
    s.set_defaults(func=cmd_data_shapes)
    m = data.add_parser("manifest", help="write a manifest for an existing COCO-format dataset")
    m.add_argument("--out", required=True)
    m.add_argument("--name", required=True)
    m.add_argument("--data-root", required=True)
    m.add_argument("--split", action="append", required=True, help="NAME:ANN_FILE:IMG_DIR")
    m.set_defaults(func=cmd_data_manifest)

    s = sub.add_parser("pretrain", help="pretrain a detector config's backbone on object crops")
    s.add_argument("--config", required=True)
    s.add_argument("--dataset", required=True)
    s.add_argument("--out", required=True)
    s.add_argument("--epochs", type=int, default=6)
    s.add_argument("--crop-size", type=int, default=48)
    s.add_argument("--seed", type=int, default=0)
    s.set_defaults(func=cmd_pretrain)

    s = sub.add_parser("fetch", help="download or copy a checkpoint and verify its sha256")
    s.add_argument("--source", required=True, help="URL or local path")
    s.add_argument("--sha256")
    s.add_argument("--out", required=True)
    s.set_defaults(func=cmd_fetch)

    s = sub.add_parser("train", help="train a detector, or one distillation stage")
    s.add_argument("--config", required=True, help="file, mmdet::x.py or mtpd::x.py")
    s.add_argument("--dataset", required=True, help="dataset manifest (dataset.json)")
    s.add_argument("--out", required=True, help="checkpoint to write (student only)")
    s.add_argument("--split", default="train")
    s.add_argument("--epochs", type=int)
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--pretrained-backbone")
    s.add_argument("--init", help="start from this checkpoint (previous stage's student)")
    s.add_argument("--distill", type=_json_arg, help="distillation settings, JSON or @file")
    s.add_argument("--batch-size", type=int)
    s.add_argument("--num-workers", type=int)
    s.add_argument("--lr", type=float)
    s.add_argument("--meta", type=_json_arg, help="extra metadata to store, JSON")
    s.add_argument("--feature-loss-split",
                   help="after a distillation stage, store its mean distillation loss on this "
                        "split (BGS's feature proxy)")
    s.set_defaults(func=cmd_train)

    s = sub.add_parser("evaluate", help="COCO AP of a checkpoint on a split")
    s.add_argument("--config", required=True)
    s.add_argument("--checkpoint", required=True)
    s.add_argument("--dataset", required=True)
    s.add_argument("--split", default="val")
    s.add_argument("--out", required=True)
    s.add_argument("--predictions")
    s.add_argument("--num-workers", type=int)
    s.add_argument("--meta", type=_json_arg, help="extra fields for the metrics JSON")
    s.set_defaults(func=cmd_evaluate)

    _bgs_parsers(sub)

    s = sub.add_parser("tables", help="result tables from metrics JSONs")
    s.add_argument("--metrics", nargs="+", required=True)
    s.add_argument("--out-dir", required=True, help="writes <dir>/tables and <dir>/plots")
    s.add_argument("--bgs", help="results/bgs/result.json, for the BGS tables and plot")
    s.set_defaults(func=cmd_tables)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(asctime)s %(name)s %(levelname)s %(message)s")
    try:
        args.func(args)
    except USER_ERRORS as e:
        if args.verbose:
            raise
        print(f"mtpd {args.command}: error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
