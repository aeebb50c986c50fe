# Step 0: the dataset (generated, or a manifest for an existing COCO-format dataset) and,
# for generated data, backbone pretraining on object crops (the stand-in for ImageNet weights).
COCO = config["dataset"].get("coco") or {}
PRETRAIN = config.get("pretrain") or {}


def shapes_args():
    shapes = config["dataset"].get("shapes") or {}
    return " ".join(f"--{k.replace('_', '-')} {v}" for k, v in shapes.items())


def coco_split_args():
    return " ".join(f"--split {k}:{v['ann_file']}:{v['img_dir']}"
                    for k, v in COCO.get("splits", {}).items())


def backbone_config(w):
    return PRETRAIN["backbones"][w.backbone]


rule make_shapes_data:
    output:
        "results/data/shapes/dataset.json",
    params:
        args=shapes_args(),
    log:
        "results/logs/data/shapes.log",
    shell:
        "mtpd data shapes --out results/data/shapes {params.args} > {log} 2>&1"


rule coco_manifest:
    output:
        "results/data/{name}/dataset.json",
    wildcard_constraints:
        name=alternation([COCO["name"]] if COCO else []),
    params:
        root=COCO.get("data_root", ""),
        splits=coco_split_args(),
    log:
        "results/logs/data/{name}.log",
    shell:
        "mtpd data manifest --out {output} --name {wildcards.name} "
        "--data-root {params.root:q} {params.splits} > {log} 2>&1"


rule pretrain_backbone:
    input:
        data=dataset_manifest(),
    output:
        "results/pretrained/{backbone}.pth",
    params:
        config=backbone_config,
        epochs=PRETRAIN.get("epochs", 20),
        crop=PRETRAIN.get("crop_size", 48),
    log:
        "results/logs/pretrained/{backbone}.log",
    shell:
        "mtpd pretrain --config {params.config} --dataset {input.data} --out {output} "
        "--epochs {params.epochs} --crop-size {params.crop} > {log} 2>&1"
