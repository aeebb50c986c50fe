# Deployment: the final MTPD student of each seed exported to ONNX (evaluation.export), kept
# only when onnxruntime reproduces PyTorch's detections and AP (mtpd/export.py); the parity
# record is written beside it (model.onnx.json).


rule export_onnx:
    input:
        data=get_dataset_manifest(),
        model="{prefix}/model.pth",
    output:
        onnx=onnx_path("{prefix}/model.pth"),
    log:
        log_path(onnx_path("{prefix}/model.pth"), "export"),
    wildcard_constraints:
        prefix=rf".+/seed\d+/progressive/{CHAIN}",
    params:
        config=STUDENT["config"],
        split=EVAL_SPLIT,
        input_size=get_input_size_flag(),
    shell:
        "mtpd export --config {params.config:q} --checkpoint {input.model:q} "
        "--dataset {input.data:q} --split {params.split} {params.input_size} "
        "--out {output.onnx:q} > {log:q} 2>&1"
