# Step 1: obtain (download + sha256) or train each teacher. Teachers are shared by every
# experiment on the same dataset; their definition is recorded beside them (spec.json).


rule record_teacher_spec:
    output:
        spec=LAYOUT.teacher_spec("{teacher}"),
    log:
        log_path(LAYOUT.teacher_spec("{teacher}"), "record"),
    localrule: True
    params:
        spec=lambda w: get_json_arg(get_teacher_spec(w.teacher)),
    shell:
        "mtpd record --out {output.spec:q} --json {params.spec} > {log:q} 2>&1"


# Every training job runs this command; the student's rules (distill.smk) reuse it.
rule train_teacher:
    input:
        data=get_dataset_manifest(),
        spec=LAYOUT.teacher_spec("{teacher}"),
        backbone=get_teacher_backbone,
        preflight=get_preflight(LAYOUT.teacher_model("{teacher}")),
    output:
        model=LAYOUT.teacher_model("{teacher}"),
    log:
        log_path(LAYOUT.teacher_model("{teacher}"), "train"),
    wildcard_constraints:
        teacher=alternation(TRAINED),
    resources:
        **get_resources("train"),
    params:
        config=get_teacher_config,
        epochs=lambda w: TEACHERS[w.teacher]["epochs"],
        seed=lambda w: TEACHERS[w.teacher]["seed"],
        start=get_start_flag,
        distill="",
        options=get_train_options,
        checkpoint_minutes=config["compute"]["checkpoint_minutes"],
    shell:
        "mtpd train --config {params.config:q} --dataset {input.data:q} "
        "--out {output.model:q} --epochs {params.epochs} --seed {params.seed} {params.start} "
        "{params.distill} {params.options} --gpus {resources.gpu} "
        "--checkpoint-minutes {params.checkpoint_minutes} > {log:q} 2>&1"


rule fetch_teacher:
    input:
        spec=LAYOUT.teacher_spec("{teacher}"),
    output:
        model=LAYOUT.teacher_model("{teacher}"),
    log:
        log_path(LAYOUT.teacher_model("{teacher}"), "fetch"),
    wildcard_constraints:
        teacher=alternation(FETCHED),
    params:
        source=lambda w: TEACHERS[w.teacher]["checkpoint"]["source"],
        sha256=lambda w: TEACHERS[w.teacher]["checkpoint"]["sha256"] or "",
        http=lambda w: (
            "--allow-http" if TEACHERS[w.teacher]["checkpoint"]["allow_http"] else ""
        ),
    shell:
        "mtpd fetch --source {params.source:q} --sha256 {params.sha256:q} {params.http} "
        "--out {output.model:q} > {log:q} 2>&1"
