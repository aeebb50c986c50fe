# Step 4, streaming: each model runs over video sequences in simulated real time at each input
# scale (streaming.scales); every ground-truth frame is scored against the latest output
# finished by then, and one pooled COCO evaluation gives streaming AP (mtpd/streaming.py).


rule stream_model:
    input:
        unpack(lambda w: PLAN.stream_inputs(model_in(w.model_dir))),
    output:
        record=PLAN.stream_record(model_in("{model_dir}"), "{scale}"),
    log:
        PLAN.stream_record_log(model_in("{model_dir}"), "{scale}"),
    wildcard_constraints:
        model_dir=r".+",
        scale=r"[0-9.]+",
    resources:
        **PLAN.resources("evaluate"),
    params:
        settings=lambda w: PLAN.stream_settings(model_in(w.model_dir)),
        split=STREAM["split"],
        latency=lambda w: PLAN.stream_latency_args(model_in(w.model_dir)),
        perf_factor=STREAM["perf_factor"],
        fps=STREAM["fps"],
        seed=PLAN.seeds[0],
    shell:
        "mtpd stream --config {params.settings[config]:q} --checkpoint {input.model:q} "
        "--dataset {input.data:q} --split {params.split} --scale {wildcards.scale} "
        "{params.latency} --perf-factor {params.perf_factor} --fps {params.fps} "
        "--seed {params.seed} --name {params.settings[name]:q} "
        "--model-classes {params.settings[classes]} --out {output.record:q} "
        "--gpus {resources.gpu} > {log:q} 2>&1"
