# Step 4, streaming: each model runs over video sequences in simulated real time at each input
# scale (streaming.scales); every ground-truth frame is scored against the latest output
# finished by then, and one pooled COCO evaluation gives streaming AP (mtpd/streaming.py).


rule stream_model:
    input:
        unpack(get_stream_inputs),
    output:
        record=stream_path(
            "{prefix}/model.pth", STREAM["dataset"]["name"], STREAM["split"], "{scale}"
        ),
    log:
        stream_path(
            "{prefix}/model.pth", STREAM["dataset"]["name"], STREAM["split"], "{scale}"
        )
        + ".log",
    wildcard_constraints:
        prefix=r".+",
        scale=r"[0-9.]+",
    resources:
        **get_resources("evaluate"),
    params:
        settings=get_stream_settings,
        split=STREAM["split"],
        latency=get_stream_latency_args,
        perf_factor=STREAM["perf_factor"],
        fps=STREAM["fps"],
        seed=SEEDS[0],
    shell:
        "mtpd stream --config {params.settings[config]:q} --checkpoint {input.model:q} "
        "--dataset {input.data:q} --split {params.split} --scale {wildcards.scale} "
        "{params.latency} --perf-factor {params.perf_factor} --fps {params.fps} "
        "--seed {params.seed} --name {params.settings[name]:q} "
        "--model-classes {params.settings[classes]} --out {output.record:q} "
        "--gpus {resources.gpu} > {log:q} 2>&1"
