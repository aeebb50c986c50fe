"""Every path under `results/`, in both directions: what to call a file, and what a file is.

The rules, BGS and the tables all ask this module, so a path is spelled in one place. Layout::

    results/
      data/<dataset>/dataset.json, checked.json       shared by every experiment on <dataset>
      data/<dataset>.log                              the log of the job that made it
      pretrained/<dataset>/<backbone>/spec.json, backbone.pth
      teachers/<dataset>/<teacher>/spec.json, model.pth, metrics_<split>.json
      teachers/<dataset>/<teacher>/snapshot_e<k>.pth  its weights after epoch k (its snapshots)
      teachers/<dataset>/<teacher>_e<k>/model.pth     that snapshot as a teacher of its own
      <experiment>/experiment.json                    the completed pipeline config
      <experiment>/cost.json                          each network's parameters, GFLOPs, latency
      <experiment>/preflight/<key>.json               its models checked, before any training
      <experiment>/seed<s>/baseline/e<E>/model.pth    the student alone, E epochs
      <experiment>/seed<s>/progressive/<t1>/<t2>/model.pth   stage 2 of the chain t1 -> t2
      <experiment>/seed<s>/continued/<t1>/<t2>/model.pth     the same, one LR schedule continued
      <experiment>/seed<s>/proxy/<t1>/<t2>/model.pth         the same chain, BGS's proxy schedule
      <experiment>/seed<s>/direct/<teacher>/e<E>/model.pth   direct distillation, E epochs
      <experiment>/seed<s>/bgs/{target,round_<r>,exhaustive,result}.json
      <experiment>/tables/*.{csv,md,tex}, <experiment>/plots/*.png
      logs/slurm/...                                  SLURM's own job logs (see the profile)

Every model has `metrics_<split>.json` (and `stream_<dataset>_<split>_s<scale>.json` when
streaming evaluation is on, `model.onnx` when exported) beside it, and every job's log sits
beside its output (`train.log`, `evaluate_<split>.log`, `stream_<dataset>_<split>_s<scale>.log`,
...). A path says what a model is (`describe`), so `mtpd tables` needs nothing but the tree.
Arguments may be Snakemake wildcards such as "{seed}"; the functions only format strings.
No heavy imports: the Snakefile loads this module.
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

ROOT = "results"
NAME = r"[A-Za-z0-9][A-Za-z0-9_.-]*"
CHAIN = rf"{NAME}(?:/{NAME})*"
MODEL = "model.pth"  # a model's checkpoint, in the directory that says what the model is
# How a chain's stages are trained, and the directory that says so: full stages that restart the
# LR schedule (the paper), full stages that continue one schedule (ours), BGS's short proxy stages.
SCHEDULES = ("progressive", "continued", "proxy")
FULL_SCHEDULES = {"restart": "progressive", "continue": "continued"}  # distill.stage_schedule
# The directory of a full stage, under any results root (a final stage is exported).
PROGRESSIVE_DIR = rf".+/seed\d+/(?:progressive|continued)/{CHAIN}"
# A student model's directory under its seed's (baseline, direct, progressive or proxy run).
STUDENT_RUN = rf"baseline/e\d+|direct/{NAME}/e\d+|(?:{'|'.join(SCHEDULES)})/{CHAIN}"
STUDENT_METHODS = ("baseline", "direct") + SCHEDULES

Chain = tuple[str, ...]


def snapshot_name(teacher: str, epoch: int | str) -> str:
    """The teacher made of a trained teacher's weights after `epoch`: `<teacher>_e<epoch>`."""
    return f"{teacher}_e{epoch}"


def chain_dir(chain: tuple[str, ...] | list[str]) -> str:
    """A chain as the directory that holds its last stage: ('a', 'b') -> 'a/b'."""
    return "/".join(chain)


def stage_prefixes(chain: tuple[str, ...] | list[str]) -> list[Chain]:
    """The stages a chain is made of, first stage first: (a, b) -> [(a,), (a, b)].

    Stage i of a chain is trained from stage i - 1, so chains that share a prefix share those
    checkpoints."""
    return [tuple(chain[: i + 1]) for i in range(len(chain))]


def metrics_path(model: str, split: str) -> str:
    """The metrics file of a model checkpoint, beside it."""
    return str(PurePosixPath(model).with_name(f"metrics_{split}.json"))


def stream_path(model: str, dataset: str, split: str, scale: float | str) -> str:
    """A model's streaming record on a sequence dataset's split at one input scale, beside it."""
    return str(PurePosixPath(model).with_name(f"stream_{dataset}_{split}_s{scale}.json"))


def stream_log(model: str, dataset: str, split: str, scale: float | str) -> str:
    """The log of the job that writes that streaming record, beside it."""
    return str(PurePosixPath(stream_path(model, dataset, split, scale)).with_suffix(".log"))


def model_in(directory: str) -> str:
    """The checkpoint of the model whose directory is `directory`."""
    return f"{directory}/{MODEL}"


def onnx_path(model: str) -> str:
    """A model's ONNX export (`mtpd export`), beside its checkpoint."""
    return str(PurePosixPath(model).with_name("model.onnx"))


def log_path(output: str, step: str) -> str:
    """A job's log, beside the file it makes: `.../model.pth` -> `.../<step>.log`."""
    return str(PurePosixPath(output).with_name(f"{step}.log"))


@dataclass(frozen=True)
class Layout:
    """The paths of one experiment on one dataset, under `root`."""

    experiment: str
    dataset: str
    root: str = ROOT

    # --- shared by every experiment on the same dataset -------------------------------------
    def dataset_dir(self) -> str:
        return f"{self.root}/data/{self.dataset}"

    def dataset_log(self) -> str:
        """The log of the job that makes or describes the dataset (beside its directory, which
        the generators write as a whole)."""
        return f"{self.dataset_dir()}.log"

    def dataset_spec(self) -> str:
        """What a generated dataset was made from."""
        return f"{self.dataset_dir()}/spec.json"

    def dataset_manifest(self) -> str:
        """The manifest as made (generated data) or described (COCO-format data)."""
        return f"{self.dataset_dir()}/dataset.json"

    def carved_manifest(self) -> str:
        """The manifest with BGS's `proxy` and `proxy_train` splits carved from `train`."""
        return f"{self.dataset_dir()}/carved.json"

    def checked_manifest(self) -> str:
        """The manifest after validation, the one every training and evaluation job reads."""
        return f"{self.dataset_dir()}/checked.json"

    def pretrained_dir(self, backbone: str) -> str:
        return f"{self.root}/pretrained/{self.dataset}/{backbone}"

    def pretrained_backbone(self, backbone: str) -> str:
        return f"{self.pretrained_dir(backbone)}/backbone.pth"

    def pretrained_spec(self, backbone: str) -> str:
        return f"{self.pretrained_dir(backbone)}/spec.json"

    def teacher_dir(self, teacher: str) -> str:
        return f"{self.root}/teachers/{self.dataset}/{teacher}"

    def teacher_spec(self, teacher: str) -> str:
        return f"{self.teacher_dir(teacher)}/spec.json"

    def teacher_model(self, teacher: str) -> str:
        return f"{self.teacher_dir(teacher)}/{MODEL}"

    def teacher_snapshot(self, teacher: str, epoch: int | str) -> str:
        """A trained teacher's weights after `epoch` of its schedule, written by its training
        job; `snapshot_name` names the teacher made of it."""
        return f"{self.teacher_dir(teacher)}/snapshot_e{epoch}.pth"

    # --- this experiment ---------------------------------------------------------------------
    def experiment_dir(self) -> str:
        return f"{self.root}/{self.experiment}"

    def experiment_file(self) -> str:
        return f"{self.experiment_dir()}/experiment.json"

    def cost_file(self) -> str:
        """Parameters, GFLOPs and the one latency of each network here (`mtpd.cost`)."""
        return f"{self.experiment_dir()}/cost.json"

    def preflight_report(self, key: str) -> str:
        """The preflight of one version of the config (`key`: `mtpd.preflight.config_key`)."""
        return f"{self.experiment_dir()}/preflight/{key}.json"

    def seed_dir(self, seed: int | str) -> str:
        return f"{self.experiment_dir()}/seed{seed}"

    def student_model(self, seed: int | str, run: str) -> str:
        """Any student model: `run` is its directory under the seed's (`STUDENT_RUN`)."""
        return f"{self.seed_dir(seed)}/{run}/{MODEL}"

    def baseline_model(self, seed: int | str, epochs: int | str) -> str:
        return f"{self.seed_dir(seed)}/baseline/e{epochs}/{MODEL}"

    def stage_model(self, seed: int | str, schedule: str, chain: str | tuple[str, ...]) -> str:
        """Stage `len(chain)` of `chain`, on one of the `SCHEDULES`."""
        chain = chain if isinstance(chain, str) else chain_dir(chain)
        return f"{self.seed_dir(seed)}/{schedule}/{chain}/{MODEL}"

    def direct_model(self, seed: int | str, teacher: str, epochs: int | str) -> str:
        return f"{self.seed_dir(seed)}/direct/{teacher}/e{epochs}/{MODEL}"

    def bgs_file(self, seed: int | str, step: str) -> str:
        """BGS state: step is `target`, `round_<r>`, `exhaustive` or `result`."""
        return f"{self.seed_dir(seed)}/bgs/{step}.json"

    def tables_dir(self) -> str:
        return f"{self.experiment_dir()}/tables"

    def plots_dir(self) -> str:
        return f"{self.experiment_dir()}/plots"

    def table_files(self, bgs: bool, exhaustive: bool, streaming: bool = False) -> list[str]:
        """What `mtpd tables` writes for this experiment (the tables rule's outputs)."""
        t, p = self.tables_dir(), self.plots_dir()
        files = [f"{t}/main.csv", f"{t}/main.md", f"{t}/main.tex", f"{t}/runs.csv",
                 f"{t}/cost.csv", f"{p}/stages.png", f"{p}/frontier.png"]
        if streaming:
            files.append(f"{t}/streaming.csv")
        if bgs:
            files += [f"{t}/bgs_log.csv", f"{t}/bgs_cost.csv", f"{p}/bgs.png"]
            if exhaustive:
                files.append(f"{t}/bgs_exhaustive.csv")
        return files


@dataclass(frozen=True)
class ModelPath:
    """What a model's path (or its metrics file's path) says it is."""

    method: str                       # teacher | baseline | direct | one of SCHEDULES
    dataset: str | None = None        # teachers only (shared by dataset)
    experiment: str | None = None     # students only
    seed: int | None = None
    teacher: str | None = None        # teacher name, or the teacher of a direct run
    chain: Chain | None = None        # progressive / proxy stages
    epochs: int | None = None         # baseline / direct (total epochs)


_TEACHER = re.compile(rf"(?:^|/)teachers/(?P<dataset>{NAME})/(?P<teacher>{NAME})/[^/]+$")
_STUDENT = re.compile(rf"(?:^|/)(?P<experiment>{NAME})/seed(?P<seed>\d+)/(?:"
                      rf"baseline/e(?P<b_epochs>\d+)|"
                      rf"direct/(?P<d_teacher>{NAME})/e(?P<d_epochs>\d+)|"
                      rf"(?P<schedule>{'|'.join(SCHEDULES)})/(?P<chain>{CHAIN}))/[^/]+$")


def describe(path: str) -> ModelPath:
    """What a model or metrics file of the layout is, from its path (the inverse of `Layout`).

    Only the end of the path counts, so it works under any results root. Raises ValueError for
    a path that is no model of the layout.
    """
    path = PurePosixPath(path).as_posix()
    m = _TEACHER.search(path)
    if m:
        return ModelPath("teacher", dataset=m["dataset"], teacher=m["teacher"])
    m = _STUDENT.search(path)
    if not m:
        raise ValueError(f"{path} is not a model path of the results layout "
                         f"(see mtpd/layout.py)")
    common = {"experiment": m["experiment"], "seed": int(m["seed"])}
    if m["b_epochs"]:
        return ModelPath("baseline", epochs=int(m["b_epochs"]), **common)
    if m["d_teacher"]:
        return ModelPath("direct", teacher=m["d_teacher"], epochs=int(m["d_epochs"]), **common)
    return ModelPath(m["schedule"], chain=tuple(m["chain"].split("/")), **common)


def definition_conflicts(checks: list[tuple[str, dict, str]]) -> list[str]:
    """Shared targets made from another definition than the one asked for now.

    Each check is (path of the recorded definition, the definition wanted now, what it is).
    A second experiment that names a teacher, backbone or dataset the same way but defines it
    otherwise must not silently retrain (and overwrite) the first one's: it gets a message."""
    problems = []
    for path, want, what in checks:
        if not Path(path).is_file():
            continue
        try:
            have = json.loads(Path(path).read_text())
        except (OSError, ValueError):
            continue  # unreadable: its rule re-runs and rewrites it
        diff = [f"{k}: {have.get(k)!r} there, {v!r} here" for k, v in want.items()
                if have.get(k) != v]
        if diff:
            problems.append(f"{what} was already made under {Path(path).parent} from another "
                            f"definition ({'; '.join(diff)}); give it another name in this "
                            f"config, or delete {Path(path).parent} to remake it")
    return problems
