# Step 3 (and the proxy trainings of step 2): the student alone, progressive distillation
# stages (one teacher each, each stage starting from the previous stage's student) and direct
# single-teacher distillation. Every one is `train_teacher`'s command with other inputs.
# A stage's path encodes its chain: .../progressive/a/b/model.pth is teacher b's stage, started
# from .../progressive/a/model.pth, so chains that share a prefix share its files; .../proxy/...
# holds the same chains trained with BGS's short proxy schedule.


use rule train_teacher as train_baseline with:
    input:
        data=get_dataset_manifest(),
        backbone=get_pretrained(STUDENT),
        preflight=get_preflight(LAYOUT.baseline_model("{seed}", "{epochs}")),
    output:
        model=LAYOUT.baseline_model("{seed}", "{epochs}"),
    log:
        log_path(LAYOUT.baseline_model("{seed}", "{epochs}"), "train"),
    params:
        config=STUDENT["config"],
        epochs=lambda w: w.epochs,
        seed=lambda w: w.seed,


use rule train_teacher as distill_stage with:
    input:
        unpack(get_stage_init),
        data=get_dataset_manifest(),
        teacher=lambda w: LAYOUT.teacher_model(get_stage_teacher(w)),
        preflight=get_preflight(LAYOUT.stage_model("{seed}", "{schedule}", "{chain}")),
    output:
        model=LAYOUT.stage_model("{seed}", "{schedule}", "{chain}"),
    log:
        log_path(LAYOUT.stage_model("{seed}", "{schedule}", "{chain}"), "train"),
    params:
        config=STUDENT["config"],
        epochs=get_stage_epochs,
        seed=lambda w: w.seed,
        distill=lambda w: get_distill_flag(get_stage_teacher(w)),
        options=get_stage_options,


use rule train_teacher as distill_direct with:
    input:
        data=get_dataset_manifest(),
        teacher=lambda w: LAYOUT.teacher_model(w.teacher),
        backbone=get_pretrained(STUDENT),
        preflight=get_preflight(LAYOUT.direct_model("{seed}", "{teacher}", "{epochs}")),
    output:
        model=LAYOUT.direct_model("{seed}", "{teacher}", "{epochs}"),
    log:
        log_path(LAYOUT.direct_model("{seed}", "{teacher}", "{epochs}"), "train"),
    params:
        config=STUDENT["config"],
        epochs=lambda w: w.epochs,
        seed=lambda w: w.seed,
        distill=lambda w: get_distill_flag(w.teacher),
