# Step 3 (and the proxy trainings of step 2): the student alone, progressive distillation
# stages (one teacher each, each stage starting from the previous stage's student) and direct
# single-teacher distillation.
# A stage's path encodes its chain: results/progressive/a/b/model.pth is teacher b's stage,
# started from results/progressive/a/model.pth, so chains that share a prefix share its files.
# results/proxy/... holds the same chains trained with BGS's short proxy schedule.


def stage_parts(w):
    return w.chain.split("/")


def stage_teacher(w):
    return teacher_checkpoint(stage_parts(w)[-1])


def stage_init(w):
    """The previous stage's student; the first stage starts from the pretrained backbone."""
    parts = stage_parts(w)
    if len(parts) == 1:
        return pretrained(STUDENT)
    return [f"results/{w.sched}/{'/'.join(parts[:-1])}/model.pth"]


def stage_init_flag(w):
    parts = stage_parts(w)
    if len(parts) == 1:
        return pretrained_flag(STUDENT)
    return f"--init results/{w.sched}/{'/'.join(parts[:-1])}/model.pth"


def stage_epochs(w):
    return STAGE_EPOCHS if w.sched == "progressive" else BGS_PROXY_EPOCHS


def stage_extra(w):
    """Proxy chains also record their distillation loss on the proxy split (feature proxy)."""
    return f"--feature-loss-split {BGS_SPLIT}" if w.sched == "proxy" else ""


def stage_distill(w):
    return distill_settings(stage_parts(w)[-1])


def direct_teacher(w):
    return teacher_checkpoint(w.teacher)


def direct_distill(w):
    return distill_settings(w.teacher)


rule train_baseline:
    input:
        data=dataset_manifest(),
        backbone=pretrained(STUDENT),
    output:
        "results/baseline/e{epochs}/model.pth",
    params:
        config=STUDENT["config"],
        pretrained=pretrained_flag(STUDENT),
        flags=train_flags(),
    log:
        "results/logs/baseline/e{epochs}.log",
    resources:
        gpu=1,
    shell:
        "mtpd train --config {params.config} --dataset {input.data} --out {output} "
        "--epochs {wildcards.epochs} {params.pretrained} {params.flags} > {log} 2>&1"


rule distill_stage:
    input:
        data=dataset_manifest(),
        teacher=stage_teacher,
        init=stage_init,
    output:
        "results/{sched}/{chain}/model.pth",
    wildcard_constraints:
        sched="progressive|proxy",
    params:
        config=STUDENT["config"],
        epochs=stage_epochs,
        init=stage_init_flag,
        distill=stage_distill,
        extra=stage_extra,
        flags=train_flags(),
    log:
        "results/logs/{sched}/{chain}.log",
    resources:
        gpu=1,
    shell:
        "mtpd train --config {params.config} --dataset {input.data} --out {output} "
        "--epochs {params.epochs} {params.init} --distill {params.distill:q} {params.extra} "
        "{params.flags} > {log} 2>&1"


rule distill_direct:
    input:
        data=dataset_manifest(),
        teacher=direct_teacher,
        backbone=pretrained(STUDENT),
    output:
        "results/direct/{teacher}/e{epochs}/model.pth",
    params:
        config=STUDENT["config"],
        pretrained=pretrained_flag(STUDENT),
        distill=direct_distill,
        flags=train_flags(),
    log:
        "results/logs/direct/{teacher}/e{epochs}.log",
    resources:
        gpu=1,
    shell:
        "mtpd train --config {params.config} --dataset {input.data} --out {output} "
        "--epochs {wildcards.epochs} {params.pretrained} --distill {params.distill:q} "
        "{params.flags} > {log} 2>&1"
