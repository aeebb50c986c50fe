# The completed config, the results layout and every helper the rules use (`get_*`).
# Defaults live in mtpd/schemas/config.schema.yaml; paths in mtpd/layout.py.
import json
import os
import shlex
import sys

from snakemake.logging import logger

import mtpd.pipeline_config as pipeline_config
from mtpd.bgs import exhaustive_chains, round_chains
from mtpd.cost import (
    STUDENT as STUDENT_MEMBER,
    network_for,
    plan_networks,
    teacher_member,
)
from mtpd.data.argoverse import scale_to_size
from mtpd.data.carve import carve_settings
from mtpd.errors import PipelineConfigError
from mtpd.orphans import stop_orphans
from mtpd.preflight import config_key
from mtpd.layout import (
    CHAIN,
    NAME,
    Layout,
    chain_dir,
    definition_conflicts,
    describe,
    log_path,
    metrics_path,
    onnx_path,
    stage_prefixes,
    stream_path,
)

try:
    completed = pipeline_config.complete(
        config, source=", ".join(map(str, workflow.configfiles)) or "config"
    )
except PipelineConfigError as err:
    raise WorkflowError(str(err))
config.clear()
config.update(completed)

LAYOUT = Layout(config["experiment"], config["dataset"]["name"])
ANY_DATASET = Layout(
    config["experiment"], "{dataset}"
)  # the data rules shared by datasets
STREAM = config["streaming"]
STREAM_LAYOUT = Layout(config["experiment"], STREAM["dataset"]["name"])
STUDENT = config["student"]
TEACHERS = config["teachers"]
DISTILL = config["distill"]
BGS = config["bgs"]
SEEDS = config["train"]["seeds"]
EVAL_SPLIT = config["evaluation"]["split"]
STAGE_EPOCHS = STUDENT["epochs"]
FETCHED = [t for t, v in TEACHERS.items() if "checkpoint" in v]
TRAINED = [t for t in TEACHERS if t not in FETCHED]


# Rules call `mtpd` from the environment that runs Snakemake (as an activated venv would), so
# `.venv/bin/snakemake` works without activating it, here and inside cluster jobs.
envvars:
    "PATH",


venv_bin = os.path.dirname(sys.executable)
os.environ["PATH"] = f"{venv_bin}{os.pathsep}{os.environ['PATH']}"


wildcard_constraints:
    teacher=NAME,
    backbone=NAME,
    chain=CHAIN,
    epochs=r"\d+",
    seed=r"\d+",
    split=NAME,
    schedule="progressive|proxy",


def alternation(names):
    return "|".join(names) if names else "(?!x)x"


# --- shared targets (dataset, pretrained backbones, teachers) and their definitions ---------
def get_dataset_manifest():
    """The validated manifest: every training and evaluation job reads this one."""
    return LAYOUT.checked_manifest()


def get_shapes_args():
    shapes = config["dataset"]["shapes"]
    return " ".join(f"--{k.replace('_', '-')} {shapes[k]}" for k in sorted(shapes))


def get_argoverse_split_args(splits):
    return " ".join(shlex.quote(f"--split={k}:{v}") for k, v in sorted(splits.items()))


def get_sequences_args():
    """The generated sequences carry the classes of the generated shapes data."""
    shapes = config["dataset"]["shapes"]
    settings = {
        **STREAM["dataset"]["sequences"],
        "shapes": shapes["shapes"],
        "textures": shapes["textures"],
    }
    return " ".join(f"--{k.replace('_', '-')} {settings[k]}" for k in sorted(settings))


def get_coco_split_args():
    splits = config["dataset"]["coco"]["splits"]
    return " ".join(
        shlex.quote(f"--split={k}:{v['ann_file']}:{v['img_dir']}")
        for k, v in sorted(splits.items())
    )


CARVES_PROXY = pipeline_config.carves_proxy(config)


def get_manifest_to_check(wildcards):
    """What validation reads: the main dataset with BGS's proxy split carved out, if it is."""
    if wildcards.dataset == config["dataset"]["name"] and CARVES_PROXY:
        return LAYOUT.carved_manifest()
    return ANY_DATASET.dataset_manifest().format(dataset=wildcards.dataset)


def get_pretrained(model):
    """The pretrained-backbone checkpoint a model starts from (embedded data), or nothing."""
    return [LAYOUT.pretrained_backbone(model["backbone"])] if model["backbone"] else []


def get_pretrain_spec(backbone):
    p = config["pretrain"]
    return {
        "config": p["backbones"][backbone],
        "epochs": p["epochs"],
        "crop_size": p["crop_size"],
        "seed": p["seed"],
    }


def get_teacher_spec(teacher):
    """What defines a teacher (shared by the experiments on a dataset)."""
    t = TEACHERS[teacher]
    if teacher in FETCHED:
        return {
            "config": t["config"],
            "source": t["checkpoint"]["source"],
            "sha256": t["checkpoint"]["sha256"],
        }
    keys = ("config", "epochs", "seed", "backbone")
    return {k: t[k] for k in keys}


def get_definition_checks():
    checks = [
        (LAYOUT.teacher_spec(t), get_teacher_spec(t), f"teacher '{t}'")
        for t in TEACHERS
    ]
    checks += [
        (LAYOUT.pretrained_spec(b), get_pretrain_spec(b), f"pretrained backbone '{b}'")
        for b in config["pretrain"]["backbones"]
    ]
    dataset = config["dataset"]
    if CARVES_PROXY:
        carve = carve_settings(
            dataset["proxy"]["images"],
            BGS["proxy_train_images"],
            dataset["proxy"]["seed"],
        )
        checks.append(
            (
                LAYOUT.carved_manifest(),
                {"carve_settings": carve},
                f"the proxy split of dataset '{dataset['name']}' (dataset.proxy, "
                "bgs.proxy_train_images)",
            )
        )
    if STREAM["enabled"] and STREAM["dataset"]["kind"] == "sequences":
        checks.append(
            (
                f"{STREAM_LAYOUT.dataset_dir()}/spec.json",
                dict(STREAM["dataset"]["sequences"]),
                f"sequence dataset '{STREAM['dataset']['name']}'",
            )
        )
    if dataset["kind"] == "shapes":
        shapes = {
            k: v.split(",") if k in ("shapes", "textures") else v
            for k, v in dataset["shapes"].items()
        }
        spec = f"{LAYOUT.dataset_dir()}/spec.json"
        checks.append((spec, shapes, f"dataset '{dataset['name']}'"))
    elif dataset["kind"] == "coco":
        coco = {
            "data_root": dataset["coco"]["data_root"],
            "splits": dataset["coco"]["splits"],
        }
        checks.append((LAYOUT.dataset_manifest(), coco, f"dataset '{dataset['name']}'"))
    else:
        source = {k: dataset["argoverse"][k] for k in ("data_root", "splits")}
        checks.append(
            (
                LAYOUT.dataset_manifest(),
                {"source": source},
                f"dataset '{dataset['name']}'",
            )
        )
    return checks


conflicts = definition_conflicts(get_definition_checks())
if conflicts:
    raise WorkflowError("\n".join(conflicts))


def get_resources(kind):
    """What a training or evaluation job asks its executor for (SLURM: the plugin's resource
    names; locally, what `--resources gpu=G` counts). `gpu` is always set, 0 included: the
    rules pass it as `--gpus`, and the job runs one process per device it is given
    (mtpd/devices.py), on the CPU when none."""
    compute = config["compute"]
    job = compute[kind]
    resources = {"gpu": job["gpus"], "mem_mb": job["mem_mb"], "runtime": job["runtime"]}
    if job["gpus"]:
        resources["cpus_per_gpu"] = job["cpus_per_gpu"]
    else:
        resources["cpus_per_task"] = job["cpus_per_gpu"]
    for key in ("gpu_model", "slurm_account", "slurm_partition"):
        if compute[key] and (key != "gpu_model" or job["gpus"]):
            resources[key] = compute[key]
    return resources


def get_teacher_check(wildcards):
    """A fetched teacher's recorded AP, checked on the evaluation split of COCO-format data."""
    ckpt = TEACHERS[wildcards.teacher].get("checkpoint")
    if not ckpt or wildcards.split != EVAL_SPLIT or config["dataset"]["kind"] != "coco":
        return ""
    flags = [
        f"--expect-{k.replace('_', '-')} {ckpt[k]}"
        for k in ("box_ap", "mask_ap")
        if ckpt[k] is not None
    ]
    if flags:
        flags.append(f"--ap-tolerance {config['evaluation']['teacher_ap_tolerance']}")
    return " ".join(flags)


def get_teacher_config(wildcards):
    return TEACHERS[wildcards.teacher]["config"]


def get_teacher_backbone(wildcards):
    return get_pretrained(TEACHERS[wildcards.teacher])


def get_json_arg(value):
    """A JSON argument, its keys sorted: Snakemake re-runs a job whose params text changed, so
    the same settings must always give the same text (whatever the config file's key order).
    """
    return shlex.quote(json.dumps(value, sort_keys=True))


# --- the preflight: every model checked before the first training job --------------------
def get_preflight_report():
    """The preflight report of this version of the config (a new config is checked anew)."""
    return LAYOUT.preflight_report(config_key(config))


def get_preflight(output):
    """An input function that holds a training job (output template `output`) until the
    preflight checkpoint has passed, and adds no input file: a model made before, or a
    teacher shared with another experiment, is not re-run for it. A job whose output exists
    (re-run for another reason) does not wait."""

    def wait(wildcards):
        if not os.path.exists(output.format(**dict(wildcards.items()))):
            checkpoints.preflight.get()
        return []

    return wait


# --- training commands ------------------------------------------------------------------------
def get_start_flag(wildcards, input):
    """Where a training job starts: the previous stage's student, or a pretrained backbone."""
    if "init" in input.keys():
        return f"--init {shlex.quote(input.init)}"
    if input.get("backbone"):
        return f"--pretrained-backbone {shlex.quote(input.backbone[0])}"
    return ""


def get_input_size_flag():
    """Argoverse-HD trains and evaluates at a fraction of its 1920x1200 frames."""
    if config["dataset"]["kind"] != "argoverse":
        return ""
    w, h = scale_to_size(config["dataset"]["argoverse"]["input_scale"])
    return f"--input-size {w}x{h}"


def get_train_options(wildcards):
    """The student's data loading settings (teachers keep their model config's batch size;
    every student run, direct distillation included, has a seed wildcard), and every training
    job's precision."""
    options = [get_input_size_flag()]
    for key in ("batch_size", "num_workers"):
        value = config["train"][key]
        if value is not None and (key == "num_workers" or "seed" in wildcards.keys()):
            options.append(f"--{key.replace('_', '-')} {value}")
    if config["train"]["precision"] != "fp32":  # fp32 jobs keep their command lines
        options.append(f"--precision {config['train']['precision']}")
    return " ".join(o for o in options if o)


def get_distill_flag(teacher):
    """`--distill` for a stage with `teacher`: the teacher plus the config's stage settings."""
    settings = pipeline_config.distill_settings(
        config, teacher, LAYOUT.teacher_model(teacher)
    )
    return f"--distill {get_json_arg(settings)}"


def get_stage_teacher(wildcards):
    return wildcards.chain.split("/")[-1]


def get_stage_init(wildcards):
    """The previous stage's student; the first stage starts from the pretrained backbone."""
    chain = wildcards.chain.split("/")
    if len(chain) == 1:
        return {"backbone": get_pretrained(STUDENT)}
    return {"init": LAYOUT.stage_model(wildcards.seed, wildcards.schedule, chain[:-1])}


def get_stage_epochs(wildcards):
    return STAGE_EPOCHS if wildcards.schedule == "progressive" else BGS["proxy_epochs"]


def get_stage_options(wildcards):
    """Proxy chains also record their distillation loss on the proxy split (feature proxy),
    and train on what is left of the training data once the proxy split is carved out.
    """
    options = get_train_options(wildcards)
    if wildcards.schedule == "proxy":
        options += f" --feature-loss-split {BGS['proxy_split']}"
        if CARVES_PROXY and BGS["proxy_split"] == "proxy":
            options += " --split proxy_train"
    return options


# --- Backward Greedy Selection (checkpoints: each round depends on the previous one) ----------
def read_json(path):
    with open(path) as f:
        return json.load(f)


def get_proxy_metrics(seed, chain):
    return metrics_path(LAYOUT.stage_model(seed, "proxy", chain), BGS["proxy_split"])


def get_bgs_target_metrics(wildcards):
    if BGS["target"] != "best":
        return []
    return [
        metrics_path(LAYOUT.teacher_model(t), BGS["proxy_split"]) for t in BGS["pool"]
    ]


def get_bgs_target(seed):
    return read_json(checkpoints.bgs_target.get(seed=seed).output[0])["target"]


def get_round_order(seed, r):
    """The order BGS holds at the start of round r."""
    if r == 1:
        return (get_bgs_target(seed),)
    previous = checkpoints.bgs_round.get(seed=seed, r=r - 1).output[0]
    return tuple(read_json(previous)["new_order"])


def get_previous_state(wildcards):
    r = int(wildcards.r)
    step = "target" if r == 1 else f"round_{r - 1}"
    return LAYOUT.bgs_file(wildcards.seed, step)


def get_round_metrics(wildcards):
    """The proxy metrics of this round's chains, its control's if any (and of the target alone
    in round 1)."""
    r = int(wildcards.r)
    order = get_round_order(wildcards.seed, r)
    chains = round_chains(BGS["pool"], order, BGS["max_stages"], BGS["control"])
    if r == 1:
        chains = [order] + chains
    return [get_proxy_metrics(wildcards.seed, c) for c in chains]


def get_bgs_round_files(wildcards):
    """Every round's file up to the one that stopped (evaluates the checkpoints in turn)."""
    files, r = [], 1
    while True:
        path = checkpoints.bgs_round.get(seed=wildcards.seed, r=r).output[0]
        files.append(path)
        if read_json(path)["stop"]:
            return files
        r += 1


def get_bgs_exhaustive_metrics(wildcards):
    target = get_bgs_target(wildcards.seed)
    chains = exhaustive_chains(BGS["pool"], BGS["max_stages"], target=target)
    return [get_proxy_metrics(wildcards.seed, c) for c in chains]


def get_bgs_exhaustive(wildcards):
    return [LAYOUT.bgs_file(wildcards.seed, "exhaustive")] if BGS["exhaustive"] else []


def get_exhaustive_flag(wildcards, input):
    return f"--exhaustive {input.exhaustive[0]}" if input.exhaustive else ""


def get_bgs_order(seed):
    """The order BGS chose for a seed (after the search has run)."""
    return read_json(checkpoints.bgs_result.get(seed=seed).output[0])["order"]


# --- what the experiment compares -------------------------------------------------------------
def get_fixed_orders():
    """Fixed teacher orders from the config (first stage first)."""
    return [tuple(o) for o in DISTILL["orders"]]


def get_mtpd_order(seed):
    """The order of the final MTPD run: BGS's choice, else the first fixed order."""
    return tuple(get_bgs_order(seed)) if BGS["enabled"] else get_fixed_orders()[0]


def get_compared_orders(seed):
    orders = get_fixed_orders() + [get_mtpd_order(seed)]
    return list(dict.fromkeys(orders))


def get_student_models(seed, orders, mtpd_order):
    """Every student model compared for `orders`: all their stages, the student alone for 1x
    and each order's total epochs, and direct distillation with the MTPD order's total epochs
    or distill.direct_epochs (left out while the MTPD order is unknown, before BGS has run).
    """
    budgets = DISTILL["direct_epochs"] or (
        [STAGE_EPOCHS * len(mtpd_order)] if mtpd_order else []
    )
    totals = {STAGE_EPOCHS} | {STAGE_EPOCHS * len(o) for o in orders} | set(budgets)
    models = [LAYOUT.baseline_model(seed, e) for e in sorted(totals)]
    for order in orders:
        models += [
            LAYOUT.stage_model(seed, "progressive", p) for p in stage_prefixes(order)
        ]
    if mtpd_order:
        models += [
            LAYOUT.direct_model(seed, t, e) for e in budgets for t in DISTILL["direct"]
        ]
    return list(dict.fromkeys(models))


def get_evaluated(models):
    return [metrics_path(m, EVAL_SPLIT) for m in models]


def get_teacher_metrics():
    return [metrics_path(LAYOUT.teacher_model(t), EVAL_SPLIT) for t in TEACHERS]


def get_static_targets():
    """What is known before BGS has run (so `snakemake -n` shows it); the tables rule pulls
    in the rest (the MTPD run of each seed's chosen order and its fair baselines)."""
    orders = get_fixed_orders()
    mtpd_order = None if BGS["enabled"] else orders[0]
    models = []
    for seed in SEEDS:
        models += get_student_models(seed, orders, mtpd_order) if orders else []
    bgs = [LAYOUT.bgs_file(s, "result") for s in SEEDS] if BGS["enabled"] else []
    streams = [r for s in SEEDS for r in get_stream_records(s, static=True)]
    return (
        get_teacher_metrics()
        + [LAYOUT.cost_file()]
        + get_evaluated(models)
        + bgs
        + list(dict.fromkeys(streams))
    )


def get_tables_inputs(wildcards):
    metrics = get_teacher_metrics() + [LAYOUT.cost_file()]
    for seed in SEEDS:
        orders = get_compared_orders(seed)
        metrics += get_evaluated(get_student_models(seed, orders, get_mtpd_order(seed)))
        metrics += get_stream_records(seed)
    metrics = list(dict.fromkeys(metrics))
    bgs = [LAYOUT.bgs_file(s, "result") for s in SEEDS] if BGS["enabled"] else []
    return {
        "experiment": LAYOUT.experiment_file(),
        "metrics": metrics,
        "bgs": bgs,
        "exports": get_export_targets(),  # known once BGS has run; the tables cite them
    }


# --- streaming evaluation -----------------------------------------------------------------
def get_stream_models(seed, static=False):
    """The models streamed (streaming.models): teachers, the student alone 1x, MTPD (known
    once BGS has run, so left out of the `static` plan)."""
    models = []
    if "teachers" in STREAM["models"]:
        models += [LAYOUT.teacher_model(t) for t in TEACHERS]
    if "baseline" in STREAM["models"]:
        models.append(LAYOUT.baseline_model(seed, STAGE_EPOCHS))
    if "mtpd" in STREAM["models"] and not static:
        models.append(LAYOUT.stage_model(seed, "progressive", get_mtpd_order(seed)))
    return models


def get_stream_records(seed, static=False):
    if not STREAM["enabled"]:
        return []
    return [
        stream_path(m, STREAM["dataset"]["name"], STREAM["split"], scale)
        for m in get_stream_models(seed, static)
        for scale in STREAM["scales"]
    ]


def get_stream_model(wildcards):
    return f"{wildcards.prefix}/model.pth"


STREAM_SHARES_TIMING = STREAM["latency"] == "measured"  # each network's one timing


def get_stream_inputs(wildcards):
    inputs = {
        "data": STREAM_LAYOUT.checked_manifest(),
        "model": get_stream_model(wildcards),
    }
    if STREAM_SHARES_TIMING:
        inputs["cost"] = LAYOUT.cost_file()
    return inputs


def get_stream_latency_args(wildcards):
    """Measured runtimes come from the network's shared timing (`mtpd cost`), so every
    checkpoint of one network streams with the same runtimes; a constant or a runtime file
    from the config is passed as it is."""
    if not STREAM_SHARES_TIMING:
        return f"--latency {shlex.quote(str(STREAM['latency']))}"
    network = get_stream_settings(wildcards)["network"]
    return (
        f"--latency {shlex.quote(LAYOUT.cost_file())} --network {shlex.quote(network)}"
    )


def get_stream_settings(wildcards):
    """Config, name in tables and classes of the model a streaming record measures."""
    where = describe(f"{wildcards.prefix}/model.pth")
    if where.method == "teacher":
        t = TEACHERS[where.teacher]
        network = network_for(NETWORKS, teacher_member(where.teacher))
        return {
            "config": t["config"],
            "name": where.teacher,
            "classes": t["classes"],
            "network": network,
        }
    label = (
        "student alone"
        if where.method == "baseline"
        else "MTPD " + " -> ".join(where.chain)
    )
    name = f"{STUDENT['name']} {label} (seed {where.seed})"
    return {
        "config": STUDENT["config"],
        "name": name,
        "classes": "dataset",
        "network": network_for(NETWORKS, STUDENT_MEMBER),
    }


def get_table_files():
    return LAYOUT.table_files(BGS["enabled"], BGS["exhaustive"], STREAM["enabled"])


def get_export_targets():
    """The final MTPD student of each seed in ONNX (evaluation.export); the tables rule pulls
    them in, so the plan before BGS stays visible in a dry run."""
    if not config["evaluation"]["export"]:
        return []
    return [
        onnx_path(LAYOUT.stage_model(s, "progressive", get_mtpd_order(s)))
        for s in SEEDS
    ]


def get_final_targets(wildcards):
    return [LAYOUT.experiment_file()] + get_static_targets() + get_table_files()


# --- what each network costs (mtpd/cost.py) -------------------------------------------------
# One trained checkpoint per network is timed: the student's is its 1x run of the first seed.
NETWORKS = plan_networks(
    STUDENT,
    LAYOUT.baseline_model(SEEDS[0], STAGE_EPOCHS),
    TEACHERS,
    LAYOUT.teacher_model,
)


def get_cost_models():
    return [n.checkpoint for n in NETWORKS]


def get_cost_args():
    """The networks and the inputs they are timed on: the evaluation split, and each streaming
    scale of the sequences when streaming evaluation is on."""
    cost = config["evaluation"]["cost"]
    plan = {"networks": [dict(n.__dict__, members=list(n.members)) for n in NETWORKS]}
    args = [
        f"--networks {get_json_arg(plan)} --split {EVAL_SPLIT}",
        get_input_size_flag(),
        f"--rounds {cost['rounds']} --images {cost['images']} --warmup {cost['warmup']}",
    ]
    if STREAM["enabled"]:
        scales = ",".join(str(s) for s in STREAM["scales"])
        args.append(
            f"--stream-dataset {STREAM_LAYOUT.checked_manifest()} "
            f"--stream-split {STREAM['split']} --scales {scales}"
        )
    return " ".join(a for a in args if a)


def get_cost_inputs():
    inputs = {"data": get_dataset_manifest(), "models": get_cost_models()}
    if STREAM["enabled"]:
        inputs["stream_data"] = STREAM_LAYOUT.checked_manifest()
    return inputs


# --- jobs of a dead run ------------------------------------------------------------------------
def stop_jobs_of_dead_runs():
    """Before the first job: stop what a dead Snakemake left running here (mtpd/orphans.py), so
    no target ever has two live jobs (two writers on its work directory)."""
    name = getattr(workflow.executor_plugin, "name", "") or ""
    stop_orphans(
        workflow.workdir_init, slurm=name.endswith("slurm"), log=logger.warning
    )
