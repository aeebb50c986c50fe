# Config validation and the helpers that map config entries to file targets.
from mtpd.settings import SettingsError, validate

try:
    validate(config, source=", ".join(str(f) for f in workflow.configfiles) or "config")
except SettingsError as err:
    raise WorkflowError(str(err))

NAME = "[A-Za-z0-9][A-Za-z0-9_.-]*"
CHAIN = f"{NAME}(/{NAME})*"
TEACHERS = config["teachers"]
STUDENT = config["student"]
DISTILL = config.get("distill") or {}
TRAIN = config.get("train") or {}
EVAL_SPLIT = (config.get("evaluation") or {}).get("split", "val")
STAGE_EPOCHS = STUDENT["epochs"]
FETCHED = [t for t, v in TEACHERS.items() if "checkpoint" in v]
TRAINED = [t for t in TEACHERS if t not in FETCHED]


def alternation(names):
    return "|".join(names) if names else "(?!x)x"


wildcard_constraints:
    teacher=NAME,
    chain=CHAIN,
    epochs=r"\d+",


def dataset_manifest():
    return f"results/data/{dataset_name()}/dataset.json"


def dataset_name():
    d = config["dataset"]
    return "shapes" if d["kind"] == "shapes" else d["coco"]["name"]


def pretrained(model):
    """Pretrained-backbone checkpoint a model starts from (embedded data), or nothing."""
    bb = model.get("backbone")
    return [f"results/pretrained/{bb}.pth"] if bb else []


def pretrained_flag(model):
    files = pretrained(model)
    return f"--pretrained-backbone {files[0]}" if files else ""


def train_flags():
    flags = f"--seed {TRAIN.get('seed', 0)}"
    for key in ("batch_size", "num_workers"):
        if TRAIN.get(key) is not None:
            flags += f" --{key.replace('_', '-')} {TRAIN[key]}"
    return flags


def teacher_checkpoint(name):
    return f"results/teachers/{name}/model.pth"


def distill_settings(teacher):
    """JSON for `mtpd train --distill`: the teacher plus the config's distill options."""
    import json

    s = {"teacher_config": TEACHERS[teacher]["config"],
         "teacher_checkpoint": teacher_checkpoint(teacher)}
    for key in ("loss", "levels", "min_positions", "adapter_norm", "inherit_neck_head"):
        if key in DISTILL:
            s[key] = DISTILL[key]
    return json.dumps(s)


def orders():
    return [list(o) for o in DISTILL.get("orders") or []]


def total_epochs():
    """Epochs of the longest progressive chain: the budget of the fair baselines."""
    return STAGE_EPOCHS * max([len(o) for o in orders()] or [1])


def chain_stages(chain):
    """`a/b/c` -> the stage checkpoints a, a/b, a/b/c."""
    parts = chain.split("/")
    return ["/".join(parts[: i + 1]) for i in range(len(parts))]


def final_targets():
    targets = [f"results/teachers/{t}/metrics_{EVAL_SPLIT}.json" for t in TEACHERS]
    targets += [f"results/baseline/e{STAGE_EPOCHS}/metrics_{EVAL_SPLIT}.json"]
    targets += main_table_inputs()
    targets += ["results/tables/main.csv", "results/tables/main.md"]
    return sorted(set(targets))


def main_table_inputs():
    m = [f"results/teachers/{t}/metrics_{EVAL_SPLIT}.json" for t in TEACHERS]
    m.append(f"results/baseline/e{STAGE_EPOCHS}/metrics_{EVAL_SPLIT}.json")
    if orders():
        m.append(f"results/baseline/e{total_epochs()}/metrics_{EVAL_SPLIT}.json")
    for order in orders():
        for stage in chain_stages("/".join(order)):
            m.append(f"results/progressive/{stage}/metrics_{EVAL_SPLIT}.json")
    for t in DISTILL.get("direct") or []:
        m.append(f"results/direct/{t}/e{total_epochs()}/metrics_{EVAL_SPLIT}.json")
    return sorted(set(m))
