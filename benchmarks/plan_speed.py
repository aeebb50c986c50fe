"""How long `snakemake -n` takes to plan: a config with 8 teachers and BGS up to 4 stages
(goal: under 5 s), the paper's configs, and the shipped embedded ones. Median of --repeats
runs in a scratch copy of the workflow; prints seconds and the number of jobs planned.

    .venv/bin/python benchmarks/plan_speed.py [--repeats 3]
"""
from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parent.parent
CONFIGS = ["config.yaml", "tiny.yaml", "coco_retinanet.yaml", "coco_retinanet_mgd.yaml",
           "coco_mask_rcnn.yaml", "coco_mask_rcnn_mgd.yaml", "argoverse_retinanet.yaml"]


def eight_teachers(path: Path) -> None:
    """The demo config with 8 teachers in the BGS pool and up to 4 stages."""
    cfg = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    base = cfg["teachers"]["retina_r34w24"]
    cfg["experiment"] = "plan-8"
    cfg["teachers"] = {f"t{i}": {**base, "epochs": 8 + i} for i in range(8)}
    cfg["distill"].pop("direct", None)
    cfg["bgs"].update(max_stages=4, exhaustive=True, target="t7")
    path.write_text(yaml.safe_dump(cfg))


def plan(wd: Path, config: str) -> tuple[float, int]:
    t0 = time.perf_counter()
    r = subprocess.run([sys.executable, "-m", "snakemake", "-n", "--cores", "2",
                        "--configfile", config], cwd=wd, capture_output=True, text=True)
    seconds = time.perf_counter() - t0
    if r.returncode:
        raise SystemExit(f"snakemake -n failed for {config}:\n{r.stderr[-2000:]}")
    total = [line.split()[1] for line in r.stdout.splitlines() if line.startswith("total ")]
    return seconds, int(total[0]) if total else 0


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--repeats", type=int, default=3)
    a = p.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        wd = Path(tmp)
        shutil.copytree(REPO / "workflow", wd / "workflow")
        shutil.copytree(REPO / "config", wd / "config")
        eight_teachers(wd / "config" / "plan8.yaml")
        print(f"{'config':32s} {'median s':>9s} {'jobs':>6s}")
        for config in ["plan8.yaml"] + CONFIGS:
            runs = [plan(wd, f"config/{config}") for _ in range(a.repeats)]
            median = statistics.median(s for s, _ in runs)
            print(f"{config:32s} {median:9.2f} {runs[0][1]:6d}")


if __name__ == "__main__":
    main()
