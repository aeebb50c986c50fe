# Step 0: the dataset (generated, or a manifest for an existing COCO-format dataset) and, for
# generated data, backbone pretraining on object crops (the stand-in for ImageNet weights).
# These files are shared by every experiment on the same dataset (see mtpd/layout.py).

if config["dataset"]["kind"] == "shapes":

    rule make_shapes_data:
        output:
            manifest=LAYOUT.dataset_manifest(),
        log:
            LAYOUT.dataset_log(),
        params:
            out_dir=unrecorded(LAYOUT.dataset_dir()),
            args=PLAN.shapes_args(),
        shell:
            "mtpd data shapes --out {params.out_dir:q} {params.args} > {log:q} 2>&1"

elif config["dataset"]["kind"] == "argoverse":

    rule argoverse_manifest:
        output:
            manifest=LAYOUT.dataset_manifest(),
        log:
            LAYOUT.dataset_log(),
        params:
            name=config["dataset"]["name"],
            root=config["dataset"]["argoverse"]["data_root"],
            splits=PLAN.argoverse_split_args(),
        shell:
            "mtpd data argoverse --out {output.manifest:q} --name {params.name} "
            "--data-root {params.root:q} {params.splits} > {log:q} 2>&1"

else:

    rule coco_manifest:
        output:
            manifest=LAYOUT.dataset_manifest(),
        log:
            LAYOUT.dataset_log(),
        params:
            name=config["dataset"]["name"],
            root=config["dataset"]["coco"]["data_root"],
            splits=PLAN.coco_split_args(),
        shell:
            "mtpd data manifest --out {output.manifest:q} --name {params.name} "
            "--data-root {params.root:q} {params.splits} > {log:q} 2>&1"


if STREAM["enabled"] and STREAM["dataset"]["kind"] == "sequences":

    rule make_sequences:
        output:
            manifest=STREAM_LAYOUT.dataset_manifest(),
        log:
            STREAM_LAYOUT.dataset_log(),
        params:
            out_dir=unrecorded(STREAM_LAYOUT.dataset_dir()),
            args=PLAN.sequences_args(),
        shell:
            "mtpd data sequences --out {params.out_dir:q} {params.args} > {log:q} 2>&1"

elif STREAM["enabled"]:

    rule argoverse_sequences:
        output:
            manifest=STREAM_LAYOUT.dataset_manifest(),
        log:
            STREAM_LAYOUT.dataset_log(),
        params:
            name=STREAM["dataset"]["name"],
            root=STREAM["dataset"]["argoverse"]["data_root"],
            splits=PLAN.stream_argoverse_split_args(),
        shell:
            "mtpd data argoverse --out {output.manifest:q} --name {params.name} "
            "--data-root {params.root:q} {params.splits} > {log:q} 2>&1"


rule carve_proxy:
    input:
        manifest=LAYOUT.dataset_manifest(),
    output:
        carved=LAYOUT.carved_manifest(),
    log:
        log_path(LAYOUT.carved_manifest(), "carve"),
    params:
        images=config["dataset"]["proxy"]["images"],
        seed=config["dataset"]["proxy"]["seed"],
        train=PLAN.carve_train_flag(),
    shell:
        "mtpd data carve --dataset {input.manifest:q} --out {output.carved:q} "
        "--proxy-images {params.images} {params.train} --seed {params.seed} > {log:q} 2>&1"


rule check_dataset:
    input:
        manifest=lambda w: PLAN.manifest_to_check(w.dataset),
    output:
        checked=ANY_DATASET.checked_manifest(),
    log:
        log_path(ANY_DATASET.checked_manifest(), "check"),
    params:
        drop=PLAN.drop_flag(),
    shell:
        "mtpd data check --dataset {input.manifest:q} --out {output.checked:q} {params.drop} "
        "> {log:q} 2>&1"


rule record_pretrain_spec:
    output:
        spec=LAYOUT.pretrained_spec("{backbone}"),
    log:
        log_path(LAYOUT.pretrained_spec("{backbone}"), "record"),
    localrule: True
    params:
        spec=lambda w: json_arg(PLAN.pretrain_spec(w.backbone)),
    shell:
        "mtpd record --out {output.spec:q} --json {params.spec} > {log:q} 2>&1"


rule pretrain_backbone:
    input:
        data=get_checked_manifest(),
        spec=LAYOUT.pretrained_spec("{backbone}"),
        preflight=get_preflight(LAYOUT.pretrained_backbone("{backbone}")),
    output:
        backbone=LAYOUT.pretrained_backbone("{backbone}"),
    log:
        log_path(LAYOUT.pretrained_backbone("{backbone}"), "pretrain"),
    resources:
        **PLAN.resources("train"),
    params:
        spec=lambda w: PLAN.pretrain_spec(w.backbone),
    shell:
        "mtpd pretrain --config {params.spec[config]:q} --dataset {input.data:q} "
        "--out {output.backbone:q} --epochs {params.spec[epochs]} "
        "--crop-size {params.spec[crop_size]} --seed {params.spec[seed]} "
        "--gpus {resources.gpu} > {log:q} 2>&1"
