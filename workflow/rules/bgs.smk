# Step 2: Backward Greedy Selection. The target teacher is fixed first (a checkpoint, since it
# may depend on the teachers' proxy AP); then each round is a checkpoint whose inputs are the
# proxy evaluations of its candidate chains [c] + order, which depend on the previous round.
# The decisions are mtpd.bgs (pure, unit-tested); these rules only move files.
import json

from mtpd.bgs import candidate_chains, exhaustive_chains


def proxy_metrics(chain):
    return f"results/proxy/{'/'.join(chain)}/metrics_{BGS_SPLIT}.json"


def bgs_target_inputs(w):
    if BGS.get("target", "best") != "best":
        return []
    return [f"results/teachers/{t}/metrics_{BGS_SPLIT}.json" for t in BGS_POOL]


def _read_json(path):
    with open(path) as f:
        return json.load(f)


def bgs_target():
    return _read_json(checkpoints.bgs_target.get().output[0])["target"]


def round_order(r):
    """The order BGS holds at the start of round r."""
    if r == 1:
        return (bgs_target(),)
    return tuple(_read_json(checkpoints.bgs_round.get(r=r - 1).output[0])["new_order"])


def previous_state(w):
    r = int(w.r)
    return "results/bgs/target.json" if r == 1 else f"results/bgs/round_{r - 1}.json"


def round_inputs(w):
    """The previous state file and the proxy metrics of this round's chains."""
    r = int(w.r)
    order = round_order(r)
    chains = candidate_chains(BGS_POOL, order) if len(order) < BGS_MAX_STAGES else []
    if r == 1:
        chains = [order] + chains
    return [previous_state(w)] + [proxy_metrics(c) for c in chains]


def bgs_round_files(w=None):
    """Every round's file up to the one that stopped (evaluates the checkpoints in turn)."""
    files, r = [], 1
    while True:
        path = checkpoints.bgs_round.get(r=r).output[0]
        files.append(path)
        if _read_json(path)["stop"]:
            return files
        r += 1


def bgs_exhaustive_inputs(w):
    chains = exhaustive_chains(BGS_POOL, BGS_MAX_STAGES, target=bgs_target())
    return [proxy_metrics(c) for c in chains]


def bgs_result_inputs(w):
    return bgs_round_files() + (["results/bgs/exhaustive.json"] if BGS_EXHAUSTIVE else [])


def exhaustive_flag(w):
    return "--exhaustive results/bgs/exhaustive.json" if BGS_EXHAUSTIVE else ""


def bgs_order():
    """The order BGS chose (after the search has run)."""
    return _read_json(checkpoints.bgs_result.get().output[0])["order"]


checkpoint bgs_target:
    input:
        bgs_target_inputs,
    output:
        "results/bgs/target.json",
    params:
        pool=",".join(BGS_POOL),
        target=BGS.get("target", "best"),
        proxy=BGS_PROXY,
    log:
        "results/logs/bgs/target.log",
    localrule: True
    shell:
        "mtpd bgs target --pool {params.pool} --target {params.target} "
        "--metrics {input} --proxy {params.proxy} --out {output} > {log} 2>&1"


checkpoint bgs_round:
    input:
        round_inputs,
    output:
        "results/bgs/round_{r}.json",
    wildcard_constraints:
        r=r"\d+",
    params:
        pool=",".join(BGS_POOL),
        proxy=BGS_PROXY,
        margin=BGS.get("margin", 0.0),
        max_stages=BGS_MAX_STAGES,
        previous=previous_state,
    log:
        "results/logs/bgs/round_{r}.log",
    localrule: True
    shell:
        "mtpd bgs round --round {wildcards.r} --pool {params.pool} --previous {params.previous} "
        "--metrics {input} --proxy {params.proxy} --margin {params.margin} "
        "--max-stages {params.max_stages} --out {output} > {log} 2>&1"


rule bgs_exhaustive:
    input:
        bgs_exhaustive_inputs,
    output:
        "results/bgs/exhaustive.json",
    params:
        proxy=BGS_PROXY,
    log:
        "results/logs/bgs/exhaustive.log",
    localrule: True
    shell:
        "mtpd bgs exhaustive --metrics {input} --proxy {params.proxy} --out {output} > {log} 2>&1"


checkpoint bgs_result:
    input:
        bgs_result_inputs,
    output:
        "results/bgs/result.json",
    params:
        pool=",".join(BGS_POOL),
        max_stages=BGS_MAX_STAGES,
        exhaustive=exhaustive_flag,
    log:
        "results/logs/bgs/result.log",
    localrule: True
    shell:
        "mtpd bgs result --rounds {input} --pool {params.pool} "
        "--max-stages {params.max_stages} {params.exhaustive} --out {output} > {log} 2>&1"
