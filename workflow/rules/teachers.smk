# Step 1: obtain (download + sha256) or train each teacher. Teachers are shared by every
# experiment on the same dataset; their definition is recorded beside them (spec.json). A
# snapshot teacher (teachers.*.snapshots) is "fetched" from the file its parent's training
# job wrote.


rule record_teacher_spec:
    output:
        spec=LAYOUT.teacher_spec("{teacher}"),
    log:
        log_path(LAYOUT.teacher_spec("{teacher}"), "record"),
    localrule: True
    params:
        spec=lambda w: json_arg(PLAN.teacher_spec(w.teacher)),
    shell:
        "mtpd record --out {output.spec:q} --json {params.spec} > {log:q} 2>&1"


rule train_teacher:
    input:
        data=get_checked_manifest(),
        spec=LAYOUT.teacher_spec("{teacher}"),
        backbone=lambda w: PLAN.pretrained(TEACHERS[w.teacher]),
        preflight=get_preflight(LAYOUT.teacher_model("{teacher}")),
    output:
        model=LAYOUT.teacher_model("{teacher}"),
    log:
        log_path(LAYOUT.teacher_model("{teacher}"), "train"),
    wildcard_constraints:
        teacher=alternation(PLAN.trained),
    resources:
        **PLAN.resources("train"),
    params:
        **get_train_params("teacher"),
    shell:
        TRAIN


rule fetch_teacher:
    input:
        spec=LAYOUT.teacher_spec("{teacher}"),
        parent=lambda w: PLAN.fetch_inputs(w.teacher),
    output:
        model=LAYOUT.teacher_model("{teacher}"),
    log:
        log_path(LAYOUT.teacher_model("{teacher}"), "fetch"),
    wildcard_constraints:
        teacher=alternation(PLAN.fetched),
    params:
        source=lambda w: TEACHERS[w.teacher]["checkpoint"]["source"],
        checks=lambda w: PLAN.fetch_checks(w.teacher),
    shell:
        "mtpd fetch --source {params.source:q} {params.checks} "
        "--out {output.model:q} > {log:q} 2>&1"
