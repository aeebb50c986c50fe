"""What more than one test file uses, other than fixtures (those are in tests/conftest.py).

Imported the same way everywhere: `from tests.helpers import ...` (tests/ is a package, so
pytest puts the repository root on sys.path). Sections: work directories and Snakemake runs;
`mtpd` on the command line; models with random weights; watching a training job from outside;
hand-made COCO data; the preflight's broken teachers.
"""
from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import pytest
import yaml

REPO = Path(__file__).resolve().parent.parent
# what Snakemake sets for a job's shell command when its rule has 1 thread (the rules
# declare none), locally and inside SLURM jobs alike (snakemake/shell.py)
ONE_THREAD = {v: "1" for v in ("OMP_NUM_THREADS", "GOTO_NUM_THREADS", "OPENBLAS_NUM_THREADS",
                               "MKL_NUM_THREADS", "VECLIB_MAXIMUM_THREADS",
                               "NUMEXPR_NUM_THREADS")}
TEACHER = "mtpd::shapes/retinanet_r34w24_shapes.py"  # random_teacher's config


# --- work directories and Snakemake runs -----------------------------------------------------
SNAKEMAKE = [sys.executable, "-m", "snakemake"]


def user_env() -> dict:
    """The environment of a user who did not activate the venv: rules must not need PATH."""
    env = dict(os.environ)
    venv_bin = str(Path(sys.executable).parent)
    env["PATH"] = os.pathsep.join(p for p in env["PATH"].split(os.pathsep) if p != venv_bin)
    env.pop("VIRTUAL_ENV", None)
    return env


def workdir(tmp_path: Path) -> Path:
    """A copy of the workflow and configs, so runs never touch the repository's results/."""
    wd = tmp_path / "wd"
    shutil.copytree(REPO / "workflow", wd / "workflow")
    shutil.copytree(REPO / "config", wd / "config")
    return wd


def snakemake(wd: Path, *args: str, timeout: int = 1500) -> subprocess.CompletedProcess:
    """`snakemake --cores 2 ...` in a work directory, as a user would type it."""
    return subprocess.run(SNAKEMAKE + ["--cores", "2", *args], cwd=wd, env=user_env(),
                          capture_output=True, text=True, timeout=timeout)


def job_stats(output: str) -> dict[str, int]:
    """Snakemake's first 'Job stats' table as {rule: count}."""
    lines = output.split("Job stats:")[1].splitlines()[3:]
    counts = {}
    for parts in (line.split() for line in lines):
        if len(parts) != 2 or not parts[1].isdigit():
            break
        counts[parts[0]] = int(parts[1])
    counts.pop("total", None)
    return counts


# --- `mtpd` on the command line ----------------------------------------------------------------
def run_mtpd(*args: str, timeout: int = 600) -> subprocess.CompletedProcess:
    """`python -m mtpd ...`, its output captured."""
    return subprocess.run([sys.executable, "-m", "mtpd", *args], capture_output=True, text=True,
                          timeout=timeout)


def one_line_error(r: subprocess.CompletedProcess, *fragments: str) -> str:
    """The run failed with exactly one line on stderr, no traceback, naming `fragments`."""
    assert r.returncode != 0, r.stdout[-2000:]
    lines = [line for line in r.stderr.splitlines() if line.startswith("mtpd ")]
    assert len(lines) == 1 and "Traceback" not in r.stderr, r.stderr[-3000:]
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])
    return lines[0]


# --- models with random weights ----------------------------------------------------------------
def random_checkpoint(config: str, manifest: Any, path: Path, meta: dict | None = None,
                      **job: Any) -> Path:
    """A model checkpoint of `config` built for `manifest` (a path or a DatasetManifest) with
    its initial random weights: a stand-in for a trained one. `job`: more build_job_config
    arguments."""
    from mmdet.registry import MODELS

    from mtpd import register_all_modules
    from mtpd.checkpoint import save_model_checkpoint
    from mtpd.data.manifest import DatasetManifest
    from mtpd.model_config import build_job_config

    register_all_modules()
    if not isinstance(manifest, DatasetManifest):
        manifest = DatasetManifest.load(manifest)
    model = MODELS.build(build_job_config(config, manifest, **job).model)
    model.init_weights()
    save_model_checkpoint(path, model.state_dict(), meta or {})
    return path


def random_teacher(tmp_path: Path, manifest: Any) -> str:
    """The shapes r34w24 teacher with random weights, as `tmp_path/teacher.pth`."""
    return str(random_checkpoint(TEACHER, manifest, tmp_path / "teacher.pth"))


def count_steps(monkeypatch: pytest.MonkeyPatch, steps: list, stop_at: int | None = None) -> None:
    """Counts the parameter updates made by mtpd's AMP wrapper (and sends this process
    SIGTERM, as SLURM would, during update `stop_at`)."""
    from mtpd.precision import MtpdAmpOptimWrapper

    update = MtpdAmpOptimWrapper.update_params

    def counted(self, loss, *args, **kwargs):
        steps.append(float(loss.detach()))
        if len(steps) == stop_at:
            os.kill(os.getpid(), signal.SIGTERM)
        return update(self, loss, *args, **kwargs)

    monkeypatch.setattr(MtpdAmpOptimWrapper, "update_params", counted)


# --- watching a training job from outside (interruption tests) ---------------------------
T = TypeVar("T")


class CheckpointWatch:
    """Where the last checkpoint of a training work directory was taken; each checkpoint is
    read once (the job writes one every iteration and this process shares its 2 cores)."""

    def __init__(self, work: Path):
        self.work, self.seen, self.position = work, "", None

    def __call__(self) -> tuple[int, int] | None:
        """(epoch index, batches done in it), or None before the first checkpoint."""
        from mtpd.checkpoint import load_checkpoint_file

        try:
            path = (self.work / "last_checkpoint").read_text().strip()
            if path != self.seen:
                meta = load_checkpoint_file(Path(path))["meta"]
                self.seen = path
                self.position = int(meta["epoch"]), int(meta.get("mtpd_iter_in_epoch", 0))
        except (OSError, RuntimeError, EOFError, KeyError, ValueError):
            pass  # not there yet, or replaced by the next one while we read it
        return self.position


def wait_for(what: str, check: Callable[[], T], timeout: float,
             proc: subprocess.Popen | None = None, log: Path | None = None,
             interval: float = 0.2) -> T:
    """Polls `check()` until it returns something truthy; fails if `proc` (Snakemake, whose
    output is in `log`) ends first."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        if proc is not None and proc.poll() is not None:
            pytest.fail(f"Snakemake ended ({proc.returncode}) before {what}:\n"
                        f"{log.read_text()[-4000:]}")
        time.sleep(interval)
    pytest.fail(f"timed out waiting for {what}")


def train_command(output: str, target: str, out: Path) -> list[str]:
    """The rule's `mtpd train` command for `target` (from Snakemake's printed shell command),
    writing to `out` instead, without the log redirection."""
    line = next(line for line in output.splitlines()
                if line.startswith("Shell command: mtpd train") and f"--out {target}" in line)
    argv = shlex.split(line.removeprefix("Shell command: ").split(" > ")[0])
    argv[argv.index("--out") + 1] = str(out)
    return [sys.executable, "-m", "mtpd", *argv[1:]]


# --- files and hand-made COCO data ---------------------------------------------------------------
def tree_digest(root: Path) -> str:
    """One sha256 over every file's path and bytes below `root`."""
    h = hashlib.sha256()
    for p in sorted(root.rglob("*")):
        if p.is_file():
            h.update(p.relative_to(root).as_posix().encode())
            h.update(p.read_bytes())
    return h.hexdigest()


def write_json(path: Path, obj: Any) -> Path:
    path.write_text(json.dumps(obj))
    return path


def read_coco(path: Path) -> Any:
    """pycocotools' COCO of `path`, without its loading messages."""
    from pycocotools.coco import COCO

    with contextlib.redirect_stdout(io.StringIO()):
        return COCO(str(path))


SMALL_W, SMALL_H = 32, 24  # every image of small_coco


def small_coco(**over: Any) -> dict[str, Any]:
    """A valid 3-image, 4-box, 2-category COCO object; keyword arguments replace its lists."""
    images = [{"id": i, "file_name": f"{i}.png", "width": SMALL_W, "height": SMALL_H}
              for i in (1, 2, 3)]
    anns = [{"id": 10 + k, "image_id": 1 + k % 3, "category_id": 1 + k % 2,
             "bbox": [2, 3, 10, 8], "area": 80, "iscrowd": 0} for k in range(4)]
    cats = [{"id": 1, "name": "cat"}, {"id": 2, "name": "dog"}]
    return {"images": images, "annotations": anns, "categories": cats, **over}


def write_png(path: Path, seed: int = 0) -> None:
    """A SMALL_W x SMALL_H PNG of noise."""
    import cv2
    import numpy as np

    noise = np.random.default_rng(seed).integers(0, 256, (SMALL_H, SMALL_W, 3), dtype=np.uint8)
    assert cv2.imwrite(str(path), noise)


def write_split(root: Path, coco: dict[str, Any] | str, name: str = "train") -> tuple[Path, Path]:
    """Writes `<name>.json` (a dict as JSON, a str verbatim) and a PNG for every file_name."""
    img_dir = root / "images"
    img_dir.mkdir(parents=True, exist_ok=True)
    for im in coco.get("images", []) if isinstance(coco, dict) else []:
        name_ = im.get("file_name") if isinstance(im, dict) else None
        if isinstance(name_, str) and not (img_dir / name_).exists():
            write_png(img_dir / name_)
    ann = root / f"{name}.json"
    ann.write_text(coco if isinstance(coco, str) else json.dumps(coco))
    return ann.resolve(), img_dir.resolve()


def small_dataset(root: Path, splits: dict[str, dict[str, Any] | str]) -> Path:
    """Each split written by write_split, and a manifest of them in `root`; returns its path."""
    for name, coco in splits.items():
        write_split(root, coco, name)
    path = root / "dataset.json"
    path.write_text(json.dumps({"name": "t", "data_root": ".", "splits": {
        name: {"ann_file": f"{name}.json", "img_dir": "images/"} for name in splits}}))
    return path


QUIRK_SIZE = 100  # every image of quirk_coco is QUIRK_SIZE x QUIRK_SIZE
QUIRK_BOXES = ([10, 10, 30, 30], [50, 50, 40, 20])  # on each image; both 'small' (area < 32^2)


def quirk_coco(first_id: int = 1) -> dict[str, Any]:
    """Two images with two boxes each (QUIRK_BOXES), annotation ids from `first_id`."""
    images = [{"id": i, "file_name": f"{i}.png", "width": QUIRK_SIZE, "height": QUIRK_SIZE}
              for i in (1, 2)]
    anns = [{"id": first_id + 2 * (img - 1) + k, "image_id": img, "category_id": 1,
             "bbox": list(box), "area": box[2] * box[3], "iscrowd": 0}
            for img in (1, 2) for k, box in enumerate(QUIRK_BOXES)]
    return {"images": images, "annotations": anns, "categories": [{"id": 1, "name": "a"}]}


def quirk_dataset(root: Path, coco: dict[str, Any]) -> Path:
    """`coco` as split val of a manifest in `root`, with its images; returns the manifest."""
    import cv2
    import numpy as np

    (root / "images").mkdir(parents=True, exist_ok=True)
    for im in coco["images"]:
        cv2.imwrite(str(root / "images" / im["file_name"]),
                    np.zeros((QUIRK_SIZE, QUIRK_SIZE, 3), np.uint8))
    (root / "val.json").write_text(json.dumps(coco))
    path = root / "dataset.json"
    path.write_text(json.dumps({"name": "q", "data_root": ".", "splits": {
        "val": {"ann_file": "val.json", "img_dir": "images/"}}}))
    return path


# --- the preflight: teachers that break it, each with what its one line must say ---------------
def one_teacher(tmp_path: Path, teacher: dict) -> Path:
    """tiny.yaml with one teacher `t`, distilled in one fixed order."""
    c = yaml.safe_load((REPO / "config" / "tiny.yaml").read_text())
    c["teachers"] = {"t": teacher}
    c["distill"]["orders"] = [["t"]]
    c["bgs"] = {"enabled": False}
    c["streaming"] = {"enabled": False}
    path = tmp_path / "experiment.yaml"
    path.write_text(yaml.safe_dump(c))
    return path


def model_config_file(tmp_path: Path, base: str, model: str) -> str:
    """A model config `teacher.py`: a shapes config with `model` overridden."""
    from mtpd.model_config import PACKAGE_CONFIGS

    path = tmp_path / "teacher.py"
    path.write_text(f"_base_ = '{PACKAGE_CONFIGS / 'shapes' / base}'\nmodel = {model}\n")
    return str(path)


BROKEN = {
    "typo'd backbone type": (
        lambda tmp: {"config": model_config_file(tmp, "retinanet_r34w24_shapes.py",
                                                 "dict(backbone=dict(type='ResNett'))"),
                     "backbone": "r34w24", "epochs": 1},
        ["teachers.t (", "model.backbone.type", "ResNett is not in the mmdet::model registry",
         "fix its model section"]),
    "unknown torchvision name": (
        lambda tmp: {"config": model_config_file(
            tmp, "retinanet_r34w24_shapes.py",
            "dict(backbone=dict(init_cfg=dict(_delete_=True, type='Pretrained', "
            "checkpoint='torchvision://resnet34x')))"), "epochs": 1},
        ["teachers.t (", "model.backbone.init_cfg.checkpoint 'torchvision://resnet34x'",
         "did you mean 'torchvision://resnet34'", "give a name from that table"]),
    "fetched teacher without sha256": (
        lambda tmp: {"config": "mtpd::shapes/retinanet_r34w24_shapes.py",
                     "checkpoint": {"source": "https://example.org/t_20200101-0123abcd.pth"}},
        ["teachers.t (mtpd::shapes/retinanet_r34w24_shapes.py)",
         "teachers.t.checkpoint.sha256 is not given", "add the file's sha256"]),
    "unmatched FPN levels": (
        lambda tmp: {"config": model_config_file(
            tmp, "retinanet_r34w24_shapes.py",
            "dict(neck=dict(num_outs=3), bbox_head=dict(anchor_generator=dict("
            "strides=[8, 16, 32])))"), "backbone": "r34w24", "epochs": 1},
        ["teachers.t (", "distilled into the student: distill.levels: student level(s) [3, 4]",
         "no teacher level within a factor of 2",
         "set distill.levels to levels both have ([0, 1, 2])"]),
}
