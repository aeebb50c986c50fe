# Step 4: evaluate every model on a split (COCO box AP, and mask AP for mask models).
import json


def teacher_config(w):
    return TEACHERS[w.teacher]["config"]


def teacher_meta(w):
    return json.dumps({"model": w.teacher, "method": "teacher", "teachers": ""})


def student_meta(w):
    """Describes a student model from its path, for the result tables and BGS."""
    name = STUDENT.get("name", "student")
    if w.kind == "baseline":
        return json.dumps({"model": name, "method": "baseline", "teachers": ""})
    if w.kind == "direct":
        teacher = w.path.split("/")[0]
        return json.dumps({"model": name, "method": "direct", "teachers": teacher})
    chain = w.path.split("/")
    per_stage = STAGE_EPOCHS if w.kind == "progressive" else BGS_PROXY_EPOCHS
    return json.dumps({"model": name, "method": w.kind, "teachers": " -> ".join(chain),
                       "chain": chain, "stage": len(chain), "epochs": per_stage * len(chain)})


rule evaluate_teacher:
    input:
        data=dataset_manifest(),
        ckpt="results/teachers/{teacher}/model.pth",
    output:
        "results/teachers/{teacher}/metrics_{split}.json",
    params:
        config=teacher_config,
        meta=teacher_meta,
    log:
        "results/logs/teachers/{teacher}.eval_{split}.log",
    shell:
        "mtpd evaluate --config {params.config} --checkpoint {input.ckpt} "
        "--dataset {input.data} --split {wildcards.split} --out {output} "
        "--meta {params.meta:q} > {log} 2>&1"


rule evaluate_student:
    input:
        data=dataset_manifest(),
        ckpt="results/{kind}/{path}/model.pth",
    output:
        "results/{kind}/{path}/metrics_{split}.json",
    wildcard_constraints:
        kind="baseline|direct|progressive|proxy",
        path=CHAIN,
    params:
        config=STUDENT["config"],
        meta=student_meta,
    log:
        "results/logs/{kind}/{path}.eval_{split}.log",
    shell:
        "mtpd evaluate --config {params.config} --checkpoint {input.ckpt} "
        "--dataset {input.data} --split {wildcards.split} --out {output} "
        "--meta {params.meta:q} > {log} 2>&1"
