# Before the first training job: every model of the experiment built with the dataset's
# classes, its pretrained weights resolved (nothing downloaded), each distilled teacher's FPN
# levels matched to the student's, and every fetched teacher's sha256 given (mtpd/preflight.py).
# Training rules wait for it through `get_preflight` (common.smk).


checkpoint preflight:
    input:
        experiment=LAYOUT.experiment_file(),
        dataset=LAYOUT.dataset_manifest(),
    output:
        report=PLAN.preflight_report(),
    log:
        log_path(PLAN.preflight_report(), "preflight"),
    localrule: True
    params:
        input_size=PLAN.input_size_flag(),
    shell:
        "mtpd preflight --experiment {input.experiment:q} --dataset {input.dataset:q} "
        "--out {output.report:q} {params.input_size} > {log:q} 2>&1"
