# Step 5: result tables.


rule tables:
    input:
        main_table_inputs(),
    output:
        csv=report("results/tables/main.csv", category="Results"),
        md="results/tables/main.md",
    log:
        "results/logs/tables.log",
    shell:
        "mtpd tables --metrics {input} --out-dir results/tables > {log} 2>&1"
