# The completed config, its experiment plan and the adapters the rules use (`get_*`).
# Every decision (which targets exist, each job's arguments and resources) is mtpd/plan.py,
# tested without Snakemake; here wildcards and BGS's checkpoints go in, paths and text come out.
# Defaults live in mtpd/schemas/config.schema.yaml; paths in mtpd/layout.py.
import os
import sys

from snakemake.logging import logger

import mtpd.pipeline_config as pipeline_config
from mtpd.errors import PipelineConfigError
from mtpd.io import read_json_file
from mtpd.layout import (
    CHAIN,
    SCHEDULES,
    NAME,
    PROGRESSIVE_DIR,
    STUDENT_RUN,
    Layout,
    definition_conflicts,
    log_path,
    metrics_path,
    model_in,
    onnx_path,
)
from mtpd.orphans import stop_orphans
from mtpd.plan import Plan, alternation, json_arg

try:
    completed = pipeline_config.complete(
        config, source=", ".join(map(str, workflow.configfiles)) or "config"
    )
except PipelineConfigError as err:
    raise WorkflowError(str(err))
config.clear()
config.update(completed)

PLAN = Plan(config)
LAYOUT = PLAN.layout
STREAM_LAYOUT = PLAN.stream_layout
ANY_DATASET = Layout(
    config["experiment"], "{dataset}"
)  # the data rules shared by datasets
STREAM = config["streaming"]
STUDENT = config["student"]
TEACHERS = config["teachers"]
BGS = config["bgs"]
EVAL_SPLIT = config["evaluation"]["split"]

conflicts = definition_conflicts(PLAN.definition_checks())
if conflicts:
    raise WorkflowError("\n".join(conflicts))


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
    schedule=alternation(SCHEDULES),


def unrecorded(value):
    """A param Snakemake does not record (a function of the job's output, as these params were
    first written): a recorded param that changes, even from a function to its value, re-runs
    every finished job of its rule."""
    return lambda wildcards, output: value


def get_checked_manifest():
    """The validated manifest: every training and evaluation job reads this one."""
    return LAYOUT.checked_manifest()


# --- the preflight: every model checked before the first training job --------------------
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


# --- training: one command for teachers, the student alone, stages and direct runs ----------
TRAIN = (
    "mtpd train --config {params.config:q} --dataset {input.data:q} "
    "--out {output.model:q} --epochs {params.epochs} --seed {params.seed} {params.start} "
    "{params.distill} {params.options} --gpus {resources.gpu} "
    "--checkpoint-minutes {params.checkpoint_minutes} > {log:q} 2>&1"
)


def get_train_params(run):
    """The params of a training rule (`TRAIN`) for a `run` of `Plan.train_job`."""

    def param(key):
        return lambda wildcards: PLAN.train_job(run, dict(wildcards.items()))[key]

    keys = ("config", "epochs", "seed", "distill", "options", "checkpoint_minutes")
    return {key: param(key) for key in keys} | {
        "start": lambda wildcards, input: PLAN.start_flag(input)
    }


def get_stage_start(wildcards):
    return PLAN.stage_start(wildcards.seed, wildcards.schedule, wildcards.chain)


# --- Backward Greedy Selection (checkpoints: each round depends on the previous one) ----------
def read_bgs_state(path):
    return read_json_file(
        path, "BGS state", WorkflowError, "delete it and re-run to remake it"
    )


def get_bgs_target(seed):
    return read_bgs_state(checkpoints.bgs_target.get(seed=seed).output[0])["target"]


def get_round_order(seed, r):
    """The order BGS holds at the start of round r."""
    if r == 1:
        return (get_bgs_target(seed),)
    previous = checkpoints.bgs_round.get(seed=seed, r=r - 1).output[0]
    return tuple(read_bgs_state(previous)["new_order"])


def get_round_metrics(wildcards):
    r = int(wildcards.r)
    order = get_round_order(wildcards.seed, r)
    return PLAN.bgs_round_metrics(wildcards.seed, r, order)


def get_bgs_round_files(wildcards):
    """Every round's file up to the one that stopped (evaluates the checkpoints in turn)."""
    files, r = [], 1
    while True:
        path = checkpoints.bgs_round.get(seed=wildcards.seed, r=r).output[0]
        files.append(path)
        if read_bgs_state(path)["stop"]:
            return files
        r += 1


def get_bgs_exhaustive_metrics(wildcards):
    target = get_bgs_target(wildcards.seed)
    return PLAN.bgs_exhaustive_metrics(wildcards.seed, target)


def get_bgs_order(seed):
    """The order BGS chose for a seed (evaluates its checkpoints)."""
    return read_bgs_state(checkpoints.bgs_result.get(seed=seed).output[0])["order"]


# --- what the experiment makes ----------------------------------------------------------------
def get_final_targets(wildcards):
    """What is known before BGS has run (so `snakemake -n` shows it); the tables rule pulls
    in the rest (each seed's MTPD run of its chosen order and its fair baselines)."""
    known = PLAN.outputs(chosen=None)
    return (
        [LAYOUT.experiment_file()]
        + known["metrics"]
        + known["bgs"]
        + known["exports"]
        + PLAN.table_files()
    )


def get_tables_inputs(wildcards):
    return {"experiment": LAYOUT.experiment_file()} | PLAN.outputs(chosen=get_bgs_order)


# --- jobs of a dead run ------------------------------------------------------------------------
def stop_jobs_of_dead_runs():
    """Before the first job: stop what a dead Snakemake left running here (mtpd/orphans.py), so
    no target ever has two live jobs (two writers on its work directory)."""
    name = getattr(workflow.executor_plugin, "name", "") or ""
    stop_orphans(
        workflow.workdir_init, slurm=name.endswith("slurm"), log=logger.warning
    )
