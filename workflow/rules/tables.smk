# Step 5: result tables (CSV, Markdown, LaTeX) and plots, from what is under results/ alone:
# experiment.json (the completed config) and the metrics and BGS files beside the models.


rule describe_experiment:
    output:
        experiment=LAYOUT.experiment_file(),
    log:
        log_path(LAYOUT.experiment_file(), "describe"),
    localrule: True
    params:
        config=json_arg(config),
    shell:
        "mtpd record --out {output.experiment:q} --json {params.config} > {log:q} 2>&1"


rule tables:
    input:
        unpack(get_tables_inputs),
    output:
        [report(f, category="Results") for f in PLAN.table_files()],
    log:
        log_path(LAYOUT.experiment_file(), "tables"),
    localrule: True
    params:
        experiment_dir=unrecorded(LAYOUT.experiment_dir()),
    shell:
        "mtpd tables {params.experiment_dir:q} > {log:q} 2>&1"
