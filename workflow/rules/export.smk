# Deployment: the final MTPD student of each seed exported to ONNX (evaluation.export), kept
# only when onnxruntime reproduces PyTorch's detections and AP (mtpd/export.py); the parity
# record is written beside it (model.onnx.json).


rule export_onnx:
    input:
        data=get_checked_manifest(),
        model=model_in("{stage_dir}"),
    output:
        onnx=onnx_path(model_in("{stage_dir}")),
    log:
        log_path(onnx_path(model_in("{stage_dir}")), "export"),
    wildcard_constraints:
        stage_dir=PROGRESSIVE_DIR,
    params:
        config=STUDENT["config"],
        split=EVAL_SPLIT,
        input_size=PLAN.input_size_flag(),
    shell:
        "mtpd export --config {params.config:q} --checkpoint {input.model:q} "
        "--dataset {input.data:q} --split {params.split} {params.input_size} "
        "--out {output.onnx:q} > {log:q} 2>&1"
