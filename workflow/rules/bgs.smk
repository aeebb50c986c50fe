# Step 2: Backward Greedy Selection, per seed. The target teacher is fixed first (a checkpoint,
# since it may depend on the teachers' proxy AP); then each round is a checkpoint whose inputs
# are the proxy evaluations of its candidate chains [c] + order, which depend on the previous
# round. The decisions are mtpd.bgs (pure, unit-tested); these rules only move files.


checkpoint bgs_target:
    input:
        metrics=lambda w: PLAN.bgs_target_metrics(w.seed),
    output:
        state=LAYOUT.bgs_file("{seed}", "target"),
    log:
        log_path(LAYOUT.bgs_file("{seed}", "target"), "target"),
    localrule: True
    params:
        pool=",".join(BGS["pool"]),
        target=BGS["target"],
        evaluation_split=EVAL_SPLIT,
    shell:
        "mtpd bgs target --pool {params.pool} --target {params.target} "
        "--metrics {input.metrics:q} --evaluation-split {params.evaluation_split} --out {output.state:q} "
        "> {log:q} 2>&1"


checkpoint bgs_round:
    input:
        previous=lambda w: PLAN.bgs_previous_state(w.seed, int(w.r)),
        metrics=get_round_metrics,
    output:
        state=LAYOUT.bgs_file("{seed}", "round_{r}"),
    log:
        log_path(LAYOUT.bgs_file("{seed}", "round_{r}"), "round_{r}"),
    wildcard_constraints:
        r=r"\d+",
    localrule: True
    params:
        pool=",".join(BGS["pool"]),
        proxy=BGS["proxy"],
        margin=BGS["margin"],
        max_stages=BGS["max_stages"],
        evaluation_split=EVAL_SPLIT,
        control=BGS["control"],
    shell:
        "mtpd bgs round --round {wildcards.r} --pool {params.pool} "
        "--previous {input.previous:q} --metrics {input.metrics:q} --proxy {params.proxy} "
        "--margin {params.margin} --max-stages {params.max_stages} "
        "--evaluation-split {params.evaluation_split} --control {params.control} "
        "--out {output.state:q} > {log:q} 2>&1"


rule bgs_exhaustive:
    input:
        metrics=get_bgs_exhaustive_metrics,
    output:
        state=LAYOUT.bgs_file("{seed}", "exhaustive"),
    log:
        log_path(LAYOUT.bgs_file("{seed}", "exhaustive"), "exhaustive"),
    localrule: True
    params:
        proxy=BGS["proxy"],
        evaluation_split=EVAL_SPLIT,
    shell:
        "mtpd bgs exhaustive --metrics {input.metrics:q} --proxy {params.proxy} "
        "--evaluation-split {params.evaluation_split} --out {output.state:q} > {log:q} 2>&1"


checkpoint bgs_result:
    input:
        rounds=get_bgs_round_files,
        exhaustive=lambda w: PLAN.bgs_exhaustive(w.seed),
    output:
        state=LAYOUT.bgs_file("{seed}", "result"),
    log:
        log_path(LAYOUT.bgs_file("{seed}", "result"), "result"),
    localrule: True
    params:
        pool=",".join(BGS["pool"]),
        max_stages=BGS["max_stages"],
        exhaustive=lambda w, input: (
            f"--exhaustive {input.exhaustive[0]}" if input.exhaustive else ""
        ),
    shell:
        "mtpd bgs result --rounds {input.rounds:q} --pool {params.pool} "
        "--max-stages {params.max_stages} {params.exhaustive} --out {output.state:q} "
        "> {log:q} 2>&1"
