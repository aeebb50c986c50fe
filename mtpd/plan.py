"""The experiment plan: which targets a completed pipeline config asks for, and each job's
arguments and resources.

`workflow/rules/common.smk` builds one `Plan` from the completed config and its `get_*`
functions only adapt it to Snakemake (wildcards in, paths or command-line text out, BGS's
checkpoints read there and passed in here). So every decision of the DAG is a plain function of
the config, testable without Snakemake (tests/test_plan.py). Paths come from `mtpd.layout`;
what BGS decides, from `mtpd.bgs`. No torch or mmdet import: the Snakefile loads this module.
"""
from __future__ import annotations

import json
import shlex
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from mtpd import pipeline_config
from mtpd.bgs import exhaustive_chains, round_chains
from mtpd.cost import STUDENT as STUDENT_MEMBER
from mtpd.cost import Network, network_for, plan_networks, teacher_member
from mtpd.data.carve import carve_settings
from mtpd.layout import (
    FULL_SCHEDULES,
    Chain,
    Layout,
    describe,
    metrics_path,
    onnx_path,
    stage_prefixes,
    stream_log,
    stream_path,
)
from mtpd.model_config import scale_to_size
from mtpd.preflight import config_key

# Each seed's MTPD order, once BGS has chosen it (read from BGS's checkpoints by the workflow).
ChosenOrder = Callable[[int], Sequence[str]]


def flags(settings: Mapping[str, Any], prefix: str = "") -> str:
    """`--key-name value` for each setting, keys sorted (the same settings, the same text)."""
    return " ".join(f"--{prefix}{k.replace('_', '-')} {settings[k]}" for k in sorted(settings))


def json_arg(value: Any) -> str:
    """A JSON argument, its keys sorted: Snakemake re-runs a job whose params text changed, so
    the same settings must always give the same text (whatever the config file's key order)."""
    return shlex.quote(json.dumps(value, sort_keys=True))


def alternation(names: Iterable[str]) -> str:
    """A regex matching exactly `names` (a wildcard constraint); none: a regex matching nothing."""
    names = list(names)
    return "|".join(names) if names else "(?!x)x"


def split_args(splits: Mapping[str, str]) -> str:
    """`--split=<name>:<annotation file>` for each split of an Argoverse-HD source."""
    return " ".join(shlex.quote(f"--split={k}:{v}") for k, v in sorted(splits.items()))


class Plan:
    """What one completed pipeline config runs."""

    def __init__(self, config: dict[str, Any]):
        self.config = config
        self.layout = Layout(config["experiment"], config["dataset"]["name"])
        self.stream = config["streaming"]
        self.stream_layout = Layout(config["experiment"], self.stream["dataset"]["name"])
        self.student = config["student"]
        self.teachers = config["teachers"]
        self.distill = config["distill"]
        self.bgs = config["bgs"]
        self.seeds: list[int] = config["train"]["seeds"]
        self.eval_split: str = config["evaluation"]["split"]
        self.stage_epochs: int = self.student["epochs"]
        # Fetched: a checkpoint from elsewhere, or a snapshot of a teacher trained here.
        self.fetched = [t for t, v in self.teachers.items() if "checkpoint" in v]
        self.trained = [t for t in self.teachers if t not in self.fetched]
        self.carves_proxy = pipeline_config.carves_proxy(config)
        # The directory of MTPD's chain: its stages restart the schedule, or continue one.
        self.mtpd_schedule = FULL_SCHEDULES[self.distill["stage_schedule"]]
        # One trained checkpoint per network is timed: the student's is its 1x run, first seed.
        self.networks: list[Network] = plan_networks(
            self.student, self.layout.baseline_model(self.seeds[0], self.stage_epochs),
            self.teachers, self.layout.teacher_model)

    # --- data ------------------------------------------------------------------------------
    def shapes_args(self) -> str:
        return flags(self.config["dataset"]["shapes"])

    def sequences_args(self) -> str:
        """The generated sequences carry the classes of the generated shapes data."""
        shapes = self.config["dataset"]["shapes"]
        return flags({**self.stream["dataset"]["sequences"], "shapes": shapes["shapes"],
                      "textures": shapes["textures"]})

    def argoverse_split_args(self) -> str:
        return split_args(self.config["dataset"]["argoverse"]["splits"])

    def stream_argoverse_split_args(self) -> str:
        return split_args({self.stream["split"]: self.stream["dataset"]["argoverse"]["ann_file"]})

    def coco_split_args(self) -> str:
        splits = self.config["dataset"]["coco"]["splits"]
        return " ".join(shlex.quote(f"--split={k}:{v['ann_file']}:{v['img_dir']}")
                        for k, v in sorted(splits.items()))

    def manifest_to_check(self, dataset: str) -> str:
        """What validation reads: the dataset with BGS's proxy split carved out, if it is."""
        if dataset == self.config["dataset"]["name"] and self.carves_proxy:
            return self.layout.carved_manifest()
        return Layout(self.config["experiment"], dataset).dataset_manifest()

    def carve_train_flag(self) -> str:
        images = self.bgs["proxy_train_images"]
        return f"--train-images {images}" if images else ""

    def drop_flag(self) -> str:
        return "--drop-bad-boxes" if self.config["dataset"]["drop_bad_boxes"] else ""

    # --- shared models and what defines them ----------------------------------------------
    def pretrained(self, model: Mapping[str, Any]) -> list[str]:
        """The pretrained-backbone checkpoint a model starts from (embedded data), or nothing."""
        return [self.layout.pretrained_backbone(model["backbone"])] if model["backbone"] else []

    def pretrain_spec(self, backbone: str) -> dict[str, Any]:
        p = self.config["pretrain"]
        return {"config": p["backbones"][backbone], "epochs": p["epochs"],
                "crop_size": p["crop_size"], "seed": p["seed"]}

    def teacher_spec(self, teacher: str) -> dict[str, Any]:
        """What defines a teacher (shared by the experiments on a dataset)."""
        t = self.teachers[teacher]
        if teacher in self.fetched:
            return {"config": t["config"], "source": t["checkpoint"]["source"],
                    "sha256": t["checkpoint"]["sha256"]}
        return {k: t[k] for k in ("config", "epochs", "seed", "backbone")}

    def fetch_checks(self, teacher: str) -> str:
        """`mtpd fetch`'s checks: the sha256 (none for a snapshot, made by this pipeline) and
        whether plain http is allowed."""
        ckpt = self.teachers[teacher]["checkpoint"]
        checks = [f"--sha256 {shlex.quote(ckpt['sha256'])}" if ckpt["sha256"] else "",
                  "--allow-http" if ckpt["allow_http"] else ""]
        return " ".join(c for c in checks if c)

    def fetch_inputs(self, teacher: str) -> list[str]:
        """A snapshot teacher waits for its parent's training, which writes it."""
        parent = self.teachers[teacher].get("snapshot_of")
        return [self.layout.teacher_model(parent)] if parent else []

    def snapshot_flags(self, teacher: str) -> str:
        """`--snapshot EPOCH:PATH` for each kept epoch of a trained teacher."""
        return " ".join(f"--snapshot {e}:{shlex.quote(self.layout.teacher_snapshot(teacher, e))}"
                        for e in self.teachers[teacher]["snapshots"])

    def definition_checks(self) -> list[tuple[str, dict[str, Any], str]]:
        """(recorded definition, the definition now, what it is) of every shared target, for
        `layout.definition_conflicts`."""
        layout, dataset = self.layout, self.config["dataset"]
        checks = [(layout.teacher_spec(t), self.teacher_spec(t), f"teacher '{t}'")
                  for t in self.teachers]
        checks += [(layout.pretrained_spec(b), self.pretrain_spec(b),
                    f"pretrained backbone '{b}'") for b in self.config["pretrain"]["backbones"]]
        if self.carves_proxy:
            carve = carve_settings(dataset["proxy"]["images"], self.bgs["proxy_train_images"],
                                   dataset["proxy"]["seed"])
            checks.append((layout.carved_manifest(), {"carve_settings": carve},
                           f"the proxy split of dataset '{dataset['name']}' (dataset.proxy, "
                           "bgs.proxy_train_images)"))
        if self.stream["enabled"] and self.stream["dataset"]["kind"] == "sequences":
            checks.append((self.stream_layout.dataset_spec(),
                           dict(self.stream["dataset"]["sequences"]),
                           f"sequence dataset '{self.stream['dataset']['name']}'"))
        what = f"dataset '{dataset['name']}'"
        if dataset["kind"] == "shapes":
            shapes = {k: v.split(",") if k in ("shapes", "textures") else v
                      for k, v in dataset["shapes"].items()}
            checks.append((layout.dataset_spec(), shapes, what))
        elif dataset["kind"] == "coco":
            coco = {"data_root": dataset["coco"]["data_root"],
                    "splits": dataset["coco"]["splits"]}
            checks.append((layout.dataset_manifest(), coco, what))
        else:
            source = {k: dataset["argoverse"][k] for k in ("data_root", "splits")}
            checks.append((layout.dataset_manifest(), {"source": source}, what))
        return checks

    def preflight_report(self) -> str:
        """The preflight report of this version of the config (a new config is checked anew)."""
        return self.layout.preflight_report(config_key(self.config))

    # --- jobs: resources and training arguments --------------------------------------------
    def resources(self, kind: str) -> dict[str, Any]:
        """What a `train` or `evaluate` job asks its executor for (SLURM: the plugin's resource
        names; locally, what `--resources gpu=G` counts). `gpu` is always set, 0 included: the
        rules pass it as `--gpus`, and the job runs one process per device it is given
        (mtpd/devices.py), on the CPU when none."""
        compute = self.config["compute"]
        job = compute[kind]
        resources = {"gpu": job["gpus"], "mem_mb": job["mem_mb"], "runtime": job["runtime"]}
        resources["cpus_per_gpu" if job["gpus"] else "cpus_per_task"] = job["cpus_per_gpu"]
        for key in ("gpu_model", "slurm_account", "slurm_partition"):
            if compute[key] and (key != "gpu_model" or job["gpus"]):
                resources[key] = compute[key]
        return resources

    def input_size_flag(self) -> str:
        """Argoverse-HD trains and evaluates at a fraction of its 1920x1200 frames."""
        if self.config["dataset"]["kind"] != "argoverse":
            return ""
        w, h = scale_to_size(self.config["dataset"]["argoverse"]["input_scale"])
        return f"--input-size {w}x{h}"

    def train_options(self, student: bool) -> str:
        """Data loading and precision of a training job. The batch size applies to the student
        only (every student run, direct distillation included): teachers keep their model
        config's batch size."""
        train = self.config["train"]
        options = [self.input_size_flag()]
        if train["batch_size"] is not None and student:
            options.append(f"--batch-size {train['batch_size']}")
        if train["num_workers"] is not None:
            options.append(f"--num-workers {train['num_workers']}")
        if train["precision"] != "fp32":  # fp32 jobs keep their command lines
            options.append(f"--precision {train['precision']}")
        return " ".join(o for o in options if o)

    def distill_flag(self, teacher: str) -> str:
        """`--distill` for a stage with `teacher`: the teacher plus the config's stage settings."""
        settings = pipeline_config.distill_settings(self.config, teacher,
                                                    self.layout.teacher_model(teacher))
        return f"--distill {json_arg(settings)}"

    @staticmethod
    def start_flag(start: Mapping[str, Any]) -> str:
        """Where a training job starts: the previous stage's student (`init`), or a pretrained
        backbone (`backbone`, a list of none or one): the job's inputs, as `stage_start` and
        `pretrained` give them."""
        if start.get("init"):
            return f"--init {shlex.quote(start['init'])}"
        if start.get("backbone"):
            return f"--pretrained-backbone {shlex.quote(start['backbone'][0])}"
        return ""

    def train_job(self, run: str, wildcards: Mapping[str, str]) -> dict[str, Any]:
        """Each argument of a training job's command (`TRAIN` in common.smk): `run` is
        `teacher`, `baseline` (the student alone), `stage` (progressive or proxy) or `direct`,
        `wildcards` its job's. Where it starts (`start_flag`) is read from its inputs."""
        w, minutes = wildcards, self.config["compute"]["checkpoint_minutes"]
        if run == "teacher":
            t = self.teachers[w["teacher"]]
            options = " ".join(o for o in (self.train_options(student=False),
                                           self.snapshot_flags(w["teacher"])) if o)
            return {"config": t["config"], "epochs": t["epochs"], "seed": t["seed"],
                    "distill": "", "options": options, "checkpoint_minutes": minutes}
        job = {"config": self.student["config"], "epochs": w.get("epochs"), "seed": w["seed"],
               "distill": "", "options": self.train_options(student=True),
               "checkpoint_minutes": minutes}
        if run == "direct":
            job["distill"] = self.distill_flag(w["teacher"])
        elif run == "stage":
            job.update(epochs=self.stage_epochs_of(w["schedule"]),
                       distill=self.distill_flag(self.stage_teacher(w["chain"])),
                       options=self.stage_options(w["schedule"], w["chain"]))
        elif run != "baseline":
            raise ValueError(f"no training run {run!r}")
        return job

    # --- progressive stages (full and proxy schedule) --------------------------------------
    @staticmethod
    def stage_teacher(chain: str) -> str:
        """The teacher of a stage: the last of its chain (`a/b` is teacher b's stage)."""
        return chain.split("/")[-1]

    def stage_start(self, seed: int | str, schedule: str, chain: str) -> dict[str, Any]:
        """The previous stage's student (`init`); the first stage starts from the pretrained
        backbone (`backbone`)."""
        stages = chain.split("/")
        if len(stages) == 1:
            return {"backbone": self.pretrained(self.student)}
        return {"init": self.layout.stage_model(seed, schedule, tuple(stages[:-1]))}

    def stage_epochs_of(self, schedule: str) -> int:
        return self.bgs["proxy_epochs"] if schedule == "proxy" else self.stage_epochs

    def continues(self, schedule: str) -> bool:
        """Whether a schedule's stages continue one LR schedule: `continued` chains, and BGS's
        proxy chains when MTPD's chain continues (the proxy mimics the chain it chooses)."""
        return schedule == "continued" or (schedule == "proxy"
                                           and self.mtpd_schedule == "continued")

    def stage_options(self, schedule: str, chain: str) -> str:
        """A continued stage trains its part of the chain's one schedule. Proxy stages also
        record their distillation loss on the proxy split (feature proxy), and train on what is
        left of the training data once the proxy split is carved out."""
        options = self.train_options(student=True)
        if self.continues(schedule):
            stage = len(chain.split("/"))
            options += f" --continue-schedule {stage}/{self.distill['continued_stages']}"
        if schedule == "proxy":
            options += f" --feature-loss-split {self.bgs['proxy_split']}"
            if self.carves_proxy and self.bgs["proxy_split"] == "proxy":
                options += " --split proxy_train"
        return options

    # --- evaluation --------------------------------------------------------------------------
    def teacher_check(self, teacher: str, split: str) -> str:
        """A fetched teacher's recorded AP, checked on the evaluation split of COCO-format data."""
        ckpt = self.teachers[teacher].get("checkpoint")
        if not ckpt or split != self.eval_split or self.config["dataset"]["kind"] != "coco":
            return ""
        text = flags({k: ckpt[k] for k in ("box_ap", "mask_ap") if ckpt[k] is not None},
                     prefix="expect-")
        if text:
            text += f" --ap-tolerance {self.config['evaluation']['teacher_ap_tolerance']}"
        return text

    # --- Backward Greedy Selection ---------------------------------------------------------
    @property
    def proxy_schedule(self) -> str:
        """Where BGS's candidate chains are trained: `proxy` (short stages), or MTPD's own
        full schedule (`bgs.proxy_schedule: full`), whose chains the comparison reuses."""
        return "proxy" if self.bgs["proxy_schedule"] == "short" else self.mtpd_schedule

    def proxy_metrics(self, seed: int | str, chain: Sequence[str],
                      schedule: str | None = None) -> str:
        """A candidate chain's score on the proxy split (in BGS's schedule by default)."""
        return metrics_path(self.layout.stage_model(seed, schedule or self.proxy_schedule,
                                                    tuple(chain)), self.bgs["proxy_split"])

    def bgs_target_metrics(self, seed: int | str) -> list[str]:
        """What picking the target reads: each pool teacher's proxy AP (`target: best`), or
        the proxy metrics of each pool teacher's one-stage chain (`target: proxy`)."""
        if self.bgs["target"] == "proxy":
            return [self.proxy_metrics(seed, (t,)) for t in self.bgs["pool"]]
        if self.bgs["target"] != "best":
            return []
        return [metrics_path(self.layout.teacher_model(t), self.bgs["proxy_split"])
                for t in self.bgs["pool"]]

    def bgs_previous_state(self, seed: int | str, r: int) -> str:
        return self.layout.bgs_file(seed, "target" if r == 1 else f"round_{r - 1}")

    def bgs_round_metrics(self, seed: int | str, r: int, order: Sequence[str]) -> list[str]:
        """The proxy metrics of round r's chains (BGS holds `order` at its start), its
        control's if any, and of the target alone in round 1."""
        chains = round_chains(self.bgs["pool"], order, self.bgs["max_stages"],
                              self.bgs["control"])
        if r == 1:
            chains = [tuple(order)] + chains
        return [self.proxy_metrics(seed, c) for c in chains]

    def bgs_exhaustive_metrics(self, seed: int | str, target: str) -> list[str]:
        chains = exhaustive_chains(self.bgs["pool"], self.bgs["max_stages"], target=target)
        return [self.proxy_metrics(seed, c) for c in chains]

    def bgs_exhaustive(self, seed: int | str) -> list[str]:
        return [self.layout.bgs_file(seed, "exhaustive")] if self.bgs["exhaustive"] else []

    # --- what the experiment compares ------------------------------------------------------
    def fixed_orders(self) -> list[Chain]:
        """Fixed teacher orders from the config (first stage first)."""
        return [tuple(o) for o in self.distill["orders"]]

    def full_chains(self, mtpd_order: Chain | None) -> list[tuple[str, Chain]]:
        """(schedule, chain) of every chain trained in full: the fixed orders (restarted, the
        paper), the continued orders, and MTPD's chain in its schedule."""
        chains = [("progressive", o) for o in self.fixed_orders()]
        chains += [("continued", tuple(o)) for o in self.distill["continued_orders"]]
        if mtpd_order:
            chains.append((self.mtpd_schedule, mtpd_order))
        return list(dict.fromkeys(chains))

    def mtpd_order(self, seed: int, chosen: ChosenOrder | None) -> Chain | None:
        """The order of the final MTPD run: BGS's choice (`chosen`, None while unknown), else
        the first fixed order."""
        if not self.bgs["enabled"]:
            return self.fixed_orders()[0]
        return tuple(chosen(seed)) if chosen else None

    def student_models(self, seed: int, mtpd_order: Chain | None) -> list[str]:
        """Every student model compared: all stages of the fixed orders and the MTPD order, the
        student alone for 1x and each order's total epochs, and direct distillation with the
        MTPD order's total epochs or distill.direct_epochs (left out while the MTPD order is
        unknown, before BGS has run)."""
        chains = self.full_chains(mtpd_order)
        if not chains:
            return []
        e = self.stage_epochs
        budgets = self.distill["direct_epochs"] or ([e * len(mtpd_order)] if mtpd_order else [])
        totals = {e} | {e * len(o) for _, o in chains} | set(budgets)
        layout = self.layout
        models = [layout.baseline_model(seed, t) for t in sorted(totals)]
        for schedule, order in chains:
            models += [layout.stage_model(seed, schedule, p) for p in stage_prefixes(order)]
        if mtpd_order:
            models += [layout.direct_model(seed, t, b) for b in budgets
                       for t in self.distill["direct"]]
        return list(dict.fromkeys(models))

    def stream_models(self, seed: int, mtpd_order: Chain | None) -> list[str]:
        """The models streamed (streaming.models): teachers, the student alone 1x, MTPD (once
        its order is known)."""
        models = []
        if "teachers" in self.stream["models"]:
            models += [self.layout.teacher_model(t) for t in self.teachers]
        if "baseline" in self.stream["models"]:
            models.append(self.layout.baseline_model(seed, self.stage_epochs))
        if "mtpd" in self.stream["models"] and mtpd_order:
            models.append(self.layout.stage_model(seed, self.mtpd_schedule, mtpd_order))
        return models

    def stream_record(self, model: str, scale: float | str) -> str:
        """A model's streaming record on the sequences' split at one input scale."""
        return stream_path(model, self.stream["dataset"]["name"], self.stream["split"], scale)

    def stream_record_log(self, model: str, scale: float | str) -> str:
        return stream_log(model, self.stream["dataset"]["name"], self.stream["split"], scale)

    def stream_records(self, seed: int, mtpd_order: Chain | None) -> list[str]:
        if not self.stream["enabled"]:
            return []
        return [self.stream_record(m, scale) for m in self.stream_models(seed, mtpd_order)
                for scale in self.stream["scales"]]

    def exports(self, mtpd_orders: Mapping[int, Chain | None]) -> list[str]:
        """The final MTPD student of each seed in ONNX (evaluation.export)."""
        if not self.config["evaluation"]["export"]:
            return []
        return [onnx_path(self.layout.stage_model(s, self.mtpd_schedule, o))
                for s, o in mtpd_orders.items() if o]

    def outputs(self, chosen: ChosenOrder | None) -> dict[str, list[str]]:
        """What the experiment makes and the tables read: every metrics and streaming record,
        the cost record, BGS's results and the ONNX exports. Without `chosen` (before BGS has
        run), what is known already, so `snakemake -n` shows it; the tables rule asks again
        with BGS's choices, which adds each seed's MTPD run and its fair baselines."""
        orders = {s: self.mtpd_order(s, chosen) for s in self.seeds}
        students = [m for s in self.seeds for m in self.student_models(s, orders[s])]
        metrics = [metrics_path(self.layout.teacher_model(t), self.eval_split)
                   for t in self.teachers]
        metrics += [self.layout.cost_file()]
        metrics += [metrics_path(m, self.eval_split) for m in students]
        if self.bgs["enabled"] and self.bgs["exhaustive"]:
            # The proxy split also scores the pool's teachers and every chain trained in full
            # (mtpd.bench): to check BGS's proxy, and to choose between variants off val.
            metrics += [metrics_path(self.layout.teacher_model(t), self.bgs["proxy_split"])
                        for t in self.bgs["pool"]]
            metrics += [metrics_path(m, self.bgs["proxy_split"]) for m in students
                        if describe(m).chain]
            if self.bgs["proxy_schedule"] == "full":  # the short proxy, checked on every order
                metrics += [self.proxy_metrics(s, c, "proxy") for s in self.seeds
                            for c in exhaustive_chains(self.bgs["pool"], self.bgs["max_stages"])]
        metrics += [r for s in self.seeds for r in self.stream_records(s, orders[s])]
        bgs = [self.layout.bgs_file(s, "result") for s in self.seeds] if self.bgs["enabled"] else []
        return {"metrics": list(dict.fromkeys(metrics)), "bgs": bgs,
                "exports": self.exports(orders)}

    def table_files(self) -> list[str]:
        return self.layout.table_files(self.bgs["enabled"], self.bgs["exhaustive"],
                                       self.stream["enabled"])

    # --- streaming -------------------------------------------------------------------------
    @property
    def stream_shares_timing(self) -> bool:
        """Measured runtimes come from each network's one timing (`mtpd cost`)."""
        return self.stream["latency"] == "measured"

    def stream_inputs(self, model: str) -> dict[str, str]:
        inputs = {"data": self.stream_layout.checked_manifest(), "model": model}
        if self.stream_shares_timing:
            inputs["cost"] = self.layout.cost_file()
        return inputs

    def stream_settings(self, model: str) -> dict[str, str]:
        """Config, name in the tables, classes and network of the model a record measures."""
        where = describe(model)
        if where.method == "teacher":
            t = self.teachers[where.teacher]
            return {"config": t["config"], "name": where.teacher, "classes": t["classes"],
                    "network": network_for(self.networks, teacher_member(where.teacher))}
        label = ("student alone" if where.method == "baseline"
                 else "MTPD " + " -> ".join(where.chain))
        return {"config": self.student["config"],
                "name": f"{self.student['name']} {label} (seed {where.seed})",
                "classes": "dataset",
                "network": network_for(self.networks, STUDENT_MEMBER)}

    def stream_latency_args(self, model: str) -> str:
        """Every checkpoint of one network streams with that network's measured runtimes; a
        constant or a runtime file from the config is passed as it is."""
        if not self.stream_shares_timing:
            return f"--latency {shlex.quote(str(self.stream['latency']))}"
        network = self.stream_settings(model)["network"]
        return f"--latency {shlex.quote(self.layout.cost_file())} --network {shlex.quote(network)}"

    # --- cost ------------------------------------------------------------------------------
    def cost_inputs(self) -> dict[str, Any]:
        inputs: dict[str, Any] = {"data": self.layout.checked_manifest(),
                                  "models": [n.checkpoint for n in self.networks]}
        if self.stream["enabled"]:
            inputs["stream_data"] = self.stream_layout.checked_manifest()
        return inputs

    def cost_args(self) -> str:
        """The networks and the inputs they are timed on: the evaluation split, and each
        streaming scale of the sequences when streaming evaluation is on."""
        cost = self.config["evaluation"]["cost"]
        plan = {"networks": [dict(n.__dict__, members=list(n.members)) for n in self.networks]}
        args = [f"--networks {json_arg(plan)} --split {self.eval_split}",
                self.input_size_flag(),
                f"--rounds {cost['rounds']} --images {cost['images']} --warmup {cost['warmup']}"]
        if self.stream["enabled"]:
            scales = ",".join(str(s) for s in self.stream["scales"])
            args.append(f"--stream-dataset {self.stream_layout.checked_manifest()} "
                        f"--stream-split {self.stream['split']} --scales {scales}")
        return " ".join(a for a in args if a)
