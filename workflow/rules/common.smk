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


# Backward Greedy Selection (rules/bgs.smk)
BGS = config.get("bgs") or {}
BGS_ON = bool(BGS) and BGS.get("enabled", True)
BGS_POOL = BGS.get("pool") or list(TEACHERS)
BGS_SPLIT = BGS.get("proxy_split", "proxy")
BGS_PROXY = BGS.get("proxy", "box_ap")
BGS_PROXY_EPOCHS = BGS.get("proxy_epochs", max(1, STAGE_EPOCHS // 4))
BGS_MAX_STAGES = BGS.get("max_stages", 3)
BGS_EXHAUSTIVE = BGS.get("exhaustive", False)


def orders():
    """Fixed teacher orders from the config (first stage first)."""
    return [list(o) for o in DISTILL.get("orders") or []]


def mtpd_order():
    """The order of the final MTPD run: BGS's choice, else the first fixed order."""
    if BGS_ON:
        return list(bgs_order())
    return orders()[0] if orders() else []


def all_orders():
    result = []
    for o in orders() + ([mtpd_order()] if BGS_ON else []):
        if o and o not in result:
            result.append(o)
    return result


def budget_epochs():
    """Total epochs of the MTPD chain: the budget of the fair baselines (student alone, direct)."""
    return STAGE_EPOCHS * max(len(mtpd_order()), 1)


def direct_teachers():
    if "direct" in DISTILL:
        return list(DISTILL["direct"])
    return list(BGS_POOL) if BGS_ON else []


def chain_stages(chain):
    """`a/b/c` -> the stage checkpoints a, a/b, a/b/c."""
    parts = chain.split("/")
    return ["/".join(parts[: i + 1]) for i in range(len(parts))]


def metrics(path):
    return f"results/{path}/metrics_{EVAL_SPLIT}.json"


def main_table_inputs(w=None):
    m = [metrics(f"teachers/{t}") for t in TEACHERS]
    totals = {STAGE_EPOCHS} | {STAGE_EPOCHS * len(o) for o in all_orders()}
    m += [metrics(f"baseline/e{e}") for e in sorted(totals)]
    for order in all_orders():
        m += [metrics(f"progressive/{stage}") for stage in chain_stages("/".join(order))]
    m += [metrics(f"direct/{t}/e{budget_epochs()}") for t in direct_teachers()]
    return sorted(set(m))


def bgs_outputs():
    return ["results/bgs/result.json"] if BGS_ON else []


def static_targets():
    """What is known before BGS has run (so `snakemake -n` shows it); the tables rule pulls
    in the rest (the MTPD run of the chosen order and its fair baselines)."""
    m = [metrics(f"teachers/{t}") for t in TEACHERS]
    m += [metrics(f"baseline/e{e}") for e in sorted({STAGE_EPOCHS} | {
        STAGE_EPOCHS * len(o) for o in orders()})]
    for order in orders():
        m += [metrics(f"progressive/{stage}") for stage in chain_stages("/".join(order))]
    return sorted(set(m))


def final_targets(w=None):
    return static_targets() + bgs_outputs() + TABLES
