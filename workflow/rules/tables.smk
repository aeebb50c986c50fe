# Step 5: result tables (CSV, Markdown, LaTeX) and plots.
TABLES = ["results/tables/main.csv", "results/tables/main.md", "results/tables/main.tex",
          "results/plots/stages.png"] + (
    ["results/tables/bgs_log.csv", "results/tables/bgs_cost.csv", "results/plots/bgs.png"]
    if BGS_ON else []) + (["results/tables/bgs_exhaustive.csv"] if BGS_ON and BGS_EXHAUSTIVE else [])


def tables_inputs(w):
    return main_table_inputs() + bgs_outputs()


rule tables:
    input:
        tables_inputs,
    output:
        report(TABLES[0], category="Results"),
        TABLES[1:3],
        report(TABLES[3], category="Plots"),
        [report(f, category="BGS") for f in TABLES[4:]],
    params:
        bgs=" ".join(f"--bgs {f}" for f in bgs_outputs()),
    log:
        "results/logs/tables.log",
    localrule: True
    shell:
        "mtpd tables --metrics {input} {params.bgs} --out-dir results "
        "> {log} 2>&1"
