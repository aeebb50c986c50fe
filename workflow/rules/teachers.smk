# Step 1: obtain (download + sha256) or train each teacher.


def teacher_backbone(w):
    return pretrained(TEACHERS[w.teacher])


def teacher_train_args(w):
    t = TEACHERS[w.teacher]
    return f"--config {t['config']} --epochs {t['epochs']} {pretrained_flag(t)}"


def teacher_source(w):
    return TEACHERS[w.teacher]["checkpoint"]["source"]


def teacher_sha_flag(w):
    sha = TEACHERS[w.teacher]["checkpoint"].get("sha256")
    return f"--sha256 {sha}" if sha else ""


rule train_teacher:
    input:
        data=dataset_manifest(),
        backbone=teacher_backbone,
    output:
        "results/teachers/{teacher}/model.pth",
    wildcard_constraints:
        teacher=alternation(TRAINED),
    params:
        args=teacher_train_args,
        flags=train_flags(),
    log:
        "results/logs/teachers/{teacher}.log",
    resources:
        gpu=1,
    shell:
        "mtpd train {params.args} --dataset {input.data} --out {output} {params.flags} "
        "> {log} 2>&1"


rule fetch_teacher:
    output:
        "results/teachers/{teacher}/model.pth",
    wildcard_constraints:
        teacher=alternation(FETCHED),
    params:
        source=teacher_source,
        sha=teacher_sha_flag,
    log:
        "results/logs/teachers/{teacher}.fetch.log",
    shell:
        "mtpd fetch --source {params.source:q} {params.sha} --out {output} > {log} 2>&1"
