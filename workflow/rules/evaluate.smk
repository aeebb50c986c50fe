# Step 4: evaluate every model on a split (COCO box AP, and mask AP for mask models).


rule evaluate_teacher:
    input:
        data=get_checked_manifest(),
        model=LAYOUT.teacher_model("{teacher}"),
    output:
        metrics=metrics_path(LAYOUT.teacher_model("{teacher}"), "{split}"),
    log:
        log_path(LAYOUT.teacher_model("{teacher}"), "evaluate_{split}"),
    resources:
        **PLAN.resources("evaluate"),
    params:
        config=lambda w: TEACHERS[w.teacher]["config"],
        backend=config["evaluation"]["backend"],
        input_size=PLAN.input_size_flag(),
        classes=lambda w: TEACHERS[w.teacher]["classes"],
        check=lambda w: PLAN.teacher_check(w.teacher, w.split),
    shell:
        "mtpd evaluate --config {params.config:q} --checkpoint {input.model:q} "
        "--dataset {input.data:q} --split {wildcards.split} --out {output.metrics:q} "
        "--gpus {resources.gpu} --backend {params.backend} {params.input_size} "
        "--model-classes {params.classes} {params.check} > {log:q} 2>&1"


use rule evaluate_teacher as evaluate_student with:
    input:
        data=get_checked_manifest(),
        model=LAYOUT.student_model("{seed}", "{run}"),
    output:
        metrics=metrics_path(LAYOUT.student_model("{seed}", "{run}"), "{split}"),
    log:
        log_path(LAYOUT.student_model("{seed}", "{run}"), "evaluate_{split}"),
    wildcard_constraints:
        run=STUDENT_RUN,
    params:
        config=STUDENT["config"],
        classes="dataset",
        check="",


# Step 4, cost: every network of the experiment timed together (interleaved, one device), its
# parameters and GFLOPs counted; the tables and every streaming run of a network use this.
rule measure_cost:
    input:
        **PLAN.cost_inputs(),
    output:
        cost=LAYOUT.cost_file(),
    log:
        log_path(LAYOUT.cost_file(), "cost"),
    resources:
        **PLAN.resources("evaluate"),
    params:
        args=PLAN.cost_args(),
    shell:
        "mtpd cost --dataset {input.data:q} {params.args} --out {output.cost:q} "
        "--gpus {resources.gpu} > {log:q} 2>&1"
