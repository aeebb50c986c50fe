# Step 3 (and the proxy trainings of step 2): the student alone, progressive distillation
# stages (one teacher each, each stage starting from the previous stage's student) and direct
# single-teacher distillation, each with the training command of the teachers (`TRAIN`).
# A stage's path encodes its chain: .../progressive/a/b/model.pth is teacher b's stage, started
# from .../progressive/a/model.pth, so chains that share a prefix share its files; .../proxy/...
# holds the same chains trained with BGS's short proxy schedule.


rule train_baseline:
    input:
        data=get_checked_manifest(),
        backbone=PLAN.pretrained(STUDENT),
        preflight=get_preflight(LAYOUT.baseline_model("{seed}", "{epochs}")),
    output:
        model=LAYOUT.baseline_model("{seed}", "{epochs}"),
    log:
        log_path(LAYOUT.baseline_model("{seed}", "{epochs}"), "train"),
    resources:
        **PLAN.resources("train"),
    params:
        **get_train_params("baseline"),
    shell:
        TRAIN


rule distill_stage:
    input:
        unpack(get_stage_start),
        data=get_checked_manifest(),
        teacher=lambda w: LAYOUT.teacher_model(PLAN.stage_teacher(w.chain)),
        preflight=get_preflight(LAYOUT.stage_model("{seed}", "{schedule}", "{chain}")),
    output:
        model=LAYOUT.stage_model("{seed}", "{schedule}", "{chain}"),
    log:
        log_path(LAYOUT.stage_model("{seed}", "{schedule}", "{chain}"), "train"),
    resources:
        **PLAN.resources("train"),
    params:
        **get_train_params("stage"),
    shell:
        TRAIN


rule distill_direct:
    input:
        data=get_checked_manifest(),
        teacher=lambda w: LAYOUT.teacher_model(w.teacher),
        backbone=PLAN.pretrained(STUDENT),
        preflight=get_preflight(LAYOUT.direct_model("{seed}", "{teacher}", "{epochs}")),
    output:
        model=LAYOUT.direct_model("{seed}", "{teacher}", "{epochs}"),
    log:
        log_path(LAYOUT.direct_model("{seed}", "{teacher}", "{epochs}"), "train"),
    resources:
        **PLAN.resources("train"),
    params:
        **get_train_params("direct"),
    shell:
        TRAIN
