"""Result tables (CSV, Markdown, LaTeX) and plots, rebuilt from what is under `results/` alone.

For one experiment (`results/<experiment>/`, described by its `experiment.json`):
* `tables/runs.*`: every evaluated model and seed, with AP columns, total epochs and wall time;
* `tables/main.*`: the same aggregated over seeds (mean, standard deviation, number of seeds):
  teachers, the student alone, direct distillation, every progressive stage and MTPD (the
  order BGS chose in each seed);
* `tables/bgs_log.*`, `bgs_cost.*` (and `bgs_exhaustive.*`): every BGS round's candidates
  and scores, and the search's cost against exhaustive search;
* `tables/cost.*`: each network's parameters, GFLOPs and its one latency (`mtpd.cost`), which
  also fill the cost columns of `main.*` (every checkpoint of a network shares them);
* `plots/stages.png` (AP after each stage, seed error bars), `plots/frontier.png` (AP against
  latency and GFLOPs) and `plots/bgs.png`.
Given the results root instead, it does that for every experiment and writes
`results/summary.*`, the main tables of all experiments side by side. A file's path says what
it is (`mtpd.layout.describe`), so no Snakemake run or pipeline config is needed.
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from mtpd.errors import ResultsError
from mtpd.io import atomic_write_text, atomic_write_with, read_json_file
from mtpd.layout import FULL_SCHEDULES, ROOT, Layout, describe, metrics_path, stream_path

STATS = ["AP", "AP50", "AP75", "APs", "APm", "APl", "mask_AP"]
METHODS = {"teacher": "teacher", "baseline": "student alone", "direct": "direct",
           "progressive": "progressive", "continued": "progressive, continued LR (ours)",
           "mtpd": "MTPD (BGS)"}
METHOD_RANK = {label: i for i, label in enumerate(METHODS.values())}
COST_COLUMNS = ["params_M", "GFLOPs", "latency_ms", "latency_p90_ms"]


def read_json(path: str | Path) -> dict[str, Any]:
    """A result record, or a one-line ResultsError naming the file."""
    return read_json_file(path, "result file", ResultsError, "re-run the rule that writes it")


def experiment_layout(exp_dir: Path) -> tuple[Layout, dict[str, Any]]:
    """The layout and completed config of the experiment stored in `exp_dir`."""
    config = read_json(exp_dir / "experiment.json")
    layout = Layout(config["experiment"], config["dataset"]["name"], root=str(exp_dir.parent))
    return layout, config


def runs(exp_dir: Path) -> pd.DataFrame:
    """One row per evaluated model and seed of an experiment, on its evaluation split."""
    layout, config = experiment_layout(exp_dir)
    split = config["evaluation"]["split"]
    student = config["student"]["name"]
    rows = []
    for t in config["teachers"]:
        path = Path(metrics_path(layout.teacher_model(t), split))
        if path.is_file():
            rows.append({**read_json(path), "model": t, "method": METHODS["teacher"],
                         "teachers": "", "seed": None, "chain": None})
    for seed in config["train"]["seeds"]:
        seed_dir = Path(layout.seed_dir(seed))
        bgs_file = Path(layout.bgs_file(seed, "result"))
        bgs_order = tuple(read_json(bgs_file)["order"]) if bgs_file.is_file() else None
        mtpd_schedule = FULL_SCHEDULES[config["distill"].get("stage_schedule", "restart")]
        for path in sorted(seed_dir.glob(f"*/**/metrics_{split}.json")):
            where = describe(str(path))
            if where.method == "proxy":
                continue
            teachers = (" -> ".join(where.chain) if where.chain else where.teacher) or ""
            row = {**read_json(path), "model": student, "method": METHODS[where.method],
                   "teachers": teachers, "seed": seed, "chain": where.chain}
            rows.append(row)
            if where.method == mtpd_schedule and where.chain == bgs_order:
                rows.append({**row, "method": METHODS["mtpd"]})
    df = pd.DataFrame(rows)
    for col in STATS + ["total_epochs", "total_train_seconds"]:
        if col not in df:
            df[col] = float("nan")
    df["train_minutes"] = pd.to_numeric(df["total_train_seconds"]) / 60
    df["epochs"] = pd.to_numeric(df["total_epochs"])
    return df


def main_table(df: pd.DataFrame) -> pd.DataFrame:
    """Mean and standard deviation over seeds of each (method, teachers, epochs).

    MTPD rows of different seeds may have different BGS orders: they are pooled, and the
    teachers column lists the distinct orders."""
    keyed = df.assign(_key=df["teachers"].where(df["method"] != METHODS["mtpd"], ""))
    rows = []
    groups = keyed.groupby(["model", "method", "_key", "epochs"], dropna=False, sort=False)
    for (model, method, key, epochs), g in groups:
        row = {"model": model, "method": method,
               "teachers": " | ".join(dict.fromkeys(g["teachers"])) if not key else key,
               "epochs": epochs, "seeds": int(g["seed"].notna().sum()) or None}
        for stat in STATS:
            values = pd.to_numeric(g[stat])
            row[stat] = values.mean()
            if stat == "AP":
                row["AP_sd"] = values.std(ddof=1) if values.count() > 1 else float("nan")
        row["train_minutes"] = pd.to_numeric(g["train_minutes"]).mean()
        rows.append(row)
    out = pd.DataFrame(rows)
    out["_rank"] = out["method"].map(METHOD_RANK)
    out = out.sort_values(["_rank", "epochs", "teachers"]).drop(columns="_rank")
    columns = ["model", "method", "teachers", "epochs", "seeds", "AP", "AP_sd"] + STATS[1:] + [
        "train_minutes"]
    out = out[columns].reset_index(drop=True)
    out["seeds"] = out["seeds"].astype("Int64")  # a count, empty for teachers (not 1.00)
    return out.dropna(axis=1, how="all")


def cost_of(record: dict[str, Any], method: str, model: str) -> dict[str, Any]:
    """The cost columns of a main-table row: its network's figures on the evaluation input."""
    from mtpd.cost import STUDENT, network_of, teacher_member

    net = network_of(record, teacher_member(model) if method == METHODS["teacher"] else STUDENT)
    if net is None:
        return dict.fromkeys(COST_COLUMNS, float("nan"))
    ev = net["inputs"]["eval"]
    return {"params_M": net["params_M"], "GFLOPs": ev["gflops"],
            "latency_ms": ev["latency_ms"]["median"], "latency_p90_ms": ev["latency_ms"]["p90"]}


def add_cost_columns(main: pd.DataFrame, record: dict[str, Any]) -> pd.DataFrame:
    """`main` with the cost columns before train_minutes (one figure per network)."""
    cost = pd.DataFrame([cost_of(record, r.method, r.model) for r in main.itertuples()],
                        index=main.index)
    at = list(main.columns).index("train_minutes") if "train_minutes" in main else len(main.columns)
    columns = list(main.columns[:at]) + COST_COLUMNS + list(main.columns[at:])
    return pd.concat([main, cost], axis=1)[columns]


def cost_table(record: dict[str, Any]) -> pd.DataFrame:
    """One row per network and input: parameters, GFLOPs, latency median, p90 and spread."""
    rows = []
    for name, net in record["networks"].items():
        for label, inp in net["inputs"].items():
            lat = inp["latency_ms"]
            rows.append({"network": name, "models": ", ".join(net["members"]),
                         "input": label, "input_size": "x".join(map(str, inp["input_size"])),
                         "params_M": net["params_M"], "GFLOPs": inp["gflops"],
                         "latency_ms": lat["median"], "latency_p90_ms": lat["p90"],
                         "round_median_sd_ms": lat["round_median_sd"],
                         "timed_images": record["rounds"] * record["images"],
                         "device": record["device"]})
    return pd.DataFrame(rows)


def verdict(main: pd.DataFrame, df: pd.DataFrame) -> tuple[pd.DataFrame, str]:
    """Which recipe won: the best student of the main table marked (`best`), and MTPD's paired
    difference to the best direct run at its own total epochs beside its row (`vs_best_direct`,
    mean +- sd over seeds of the per-seed difference), with a line that says both."""
    main = main.assign(best="", vs_best_direct="")
    students = main[main["method"] != METHODS["teacher"]]
    if students.empty or students["AP"].isna().all():
        return main, ""
    best = students["AP"].idxmax()
    main.loc[best, "best"] = "best"
    line = (f"Best student: {main.loc[best, 'method']} {main.loc[best, 'teachers']} at "
            f"{main.loc[best, 'epochs']:g} epochs, AP {main.loc[best, 'AP']:.2f}.")
    mtpd = df[df["method"] == METHODS["mtpd"]]
    if mtpd.empty:
        return main, line
    epochs = mtpd["epochs"].mode().iloc[0]  # BGS may stop at another length in some seed
    direct = main[(main["method"] == METHODS["direct"]) & (main["epochs"] == epochs)]
    if direct.empty:
        return main, line
    teacher = direct.loc[direct["AP"].idxmax(), "teachers"]
    runs_ = df[(df["method"] == METHODS["direct"]) & (df["teachers"] == teacher)
               & (df["epochs"] == epochs)].set_index("seed")["AP"]
    mine = mtpd[mtpd["epochs"] == epochs].set_index("seed")["AP"]
    diffs = (mine - runs_).dropna()
    if diffs.empty:
        return main, line
    sd = f" +- {diffs.std(ddof=1):.2f}" if len(diffs) > 1 else ""
    text = f"{diffs.mean():+.2f}{sd} ({teacher}, {len(diffs)} seeds)"
    rows = (main["method"] == METHODS["mtpd"]) & (main["epochs"] == epochs)
    main.loc[rows, "vs_best_direct"] = text
    return main, (f"{line} MTPD minus the best direct run at {epochs:g} epochs, paired by seed: "
                  f"{text}.")


def cost_summary(main: pd.DataFrame, record: dict[str, Any]) -> str:
    """What the MTPD student saves against its target teacher (the last of its order), e.g.
    "MTPD student: 0.42x the parameters ... of the target teacher at -1.3 AP"."""
    mtpd = main[main["method"] == METHODS["mtpd"]]
    if mtpd.empty:
        return "No MTPD run in this experiment (BGS is off): no cost summary."
    row = mtpd.iloc[0]
    targets = [t.split(" -> ")[-1] for t in str(row["teachers"]).split(" | ")]
    target = max(set(targets), key=targets.count)
    teacher = main[(main["method"] == METHODS["teacher"]) & (main["model"] == target)]
    if teacher.empty or pd.isna(row["latency_ms"]) or pd.isna(teacher.iloc[0]["latency_ms"]):
        return f"MTPD student: no measured cost of its target teacher {target}."
    t = teacher.iloc[0]
    return (f"MTPD student: {row['params_M'] / t['params_M']:.2f}x the parameters, "
            f"{row['GFLOPs'] / t['GFLOPs']:.2f}x the GFLOPs and "
            f"{row['latency_ms'] / t['latency_ms']:.2f}x the latency of the target teacher "
            f"{target} at {row['AP'] - t['AP']:+.2f} AP. Latency: median ms per image at batch "
            f"1 on {record['device']}, one timing per network shared by all its checkpoints "
            "(tables/cost.md); GFLOPs: backbone, neck and head, without NMS.")


def export_notes(exp_dir: Path, seeds: list[int]) -> list[str]:
    """One line per ONNX export found beside a progressive student (`mtpd export`)."""
    layout, _ = experiment_layout(exp_dir)
    notes = []
    for seed in seeds:
        for path in sorted(Path(layout.seed_dir(seed)).glob("*/**/model.onnx.json")):
            rec = read_json(path)
            p = rec["parity"]
            notes.append(f"ONNX export ({path.relative_to(exp_dir)}): box AP {p['AP_onnx']} "
                         f"against PyTorch's {p['AP_pytorch']}, boxes within "
                         f"{p['max_abs_diff_box_px']:.2g} px and scores within "
                         f"{p['max_abs_diff_score']:.2g} on {p['images']} images "
                         f"({rec['export_seconds']} s to export).")
    return notes


def bgs_tables(result: dict[str, Any], seed: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """One seed's BGS log (round, candidate, chain, proxy score, chosen) and cost table."""
    rows = []
    for d in result["rounds"]:
        order = " -> ".join(d["order"])
        if d["round"] == 1:
            rows.append({"seed": seed, "round": 0, "candidate": "(target)", "chain": order,
                         "proxy_score": d["order_score"], "chosen": True})
        for cand, score in d["candidates"].items():
            rows.append({"seed": seed, "round": d["round"], "candidate": cand,
                         "chain": " -> ".join([cand, *d["order"]]), "proxy_score": score,
                         "chosen": cand == d["chosen"]})
        if d.get("control_score") is not None:  # the equal-budget bar of the round
            rows.append({"seed": seed, "round": d["round"], "candidate": "(control)",
                         "chain": " -> ".join([d["order"][0], *d["order"]]),
                         "proxy_score": d["control_score"], "chosen": False})
    log = pd.DataFrame(rows, columns=["seed", "round", "candidate", "chain", "proxy_score",
                                      "chosen"])
    c = result["cost"]
    cost = pd.DataFrame([{"seed": seed, "search": search, "chains": c[f"{search}_chains"],
                          "stage_trainings_without_reuse":
                              c[f"{search}_stage_trainings_without_reuse"],
                          "stage_trainings_with_reuse": c[f"{search}_stage_trainings_with_reuse"]}
                         for search in ("bgs", "exhaustive")])
    return log, cost


def sweep_table(records: Sequence[dict]) -> list[dict]:
    """The best input scale per model by sAP (ties: the smaller scale), as in the paper's
    streaming table; one row per model in order of first appearance, with sAP at every scale.

    A model's records must share latency source and device: sAP from different devices (or
    latency models) is not comparable."""
    groups: dict[str, list[dict]] = {}
    for r in records:
        groups.setdefault(r["model"], []).append(r)
    rows = []
    for model, recs in groups.items():
        kinds = {(r["latency"]["source"], r["latency"].get("device")) for r in recs}
        if len(kinds) > 1:
            raise ResultsError(f"the streaming records of {model} mix latency sources/devices "
                               f"{sorted(map(str, kinds))}; compare scales on one device")
        recs = sorted(recs, key=lambda r: r["scale"])
        best = recs[0]
        for r in recs[1:]:
            if (r["sAP"] or 0.0) > (best["sAP"] or 0.0):
                best = r
        rows.append({"model": model, "best_scale": best["scale"],
                     "input_size": best["input_size"], "sAP": best["sAP"], "AP": best["AP"],
                     "runtime_mean_ms": best["runtime_ms"]["mean"],
                     "latency": best["latency"]["source"],
                     "latency_of": best["latency"].get("network") or "this checkpoint",
                     "device": best["device"],
                     "sAP_by_scale": {str(r["scale"]): r["sAP"] for r in recs}})
    return rows


def streaming_table(exp_dir: Path) -> pd.DataFrame:
    """Streaming AP per model: sAP at every input scale, the best scale (as in the paper's
    streaming table), offline AP there, the runtime and the device it was measured on."""
    layout, config = experiment_layout(exp_dir)
    s = config["streaming"]
    # this experiment's scales only: teacher directories are shared by the dataset's experiments
    names = [Path(stream_path("x/model.pth", s["dataset"]["name"], s["split"], scale)).name
             for scale in s["scales"]]
    teachers = config["teachers"] if "teachers" in s["models"] else []
    paths = [p for t in teachers for n in names
             if (p := Path(layout.teacher_dir(t)) / n).is_file()]
    for seed in config["train"]["seeds"]:
        paths += sorted(p for n in names for p in Path(layout.seed_dir(seed)).glob(f"**/{n}"))
    records = [read_json(p) for p in paths]
    rows = []
    for row in sweep_table(records):
        by_scale = {f"sAP@{k}": v for k, v in row.pop("sAP_by_scale").items()}
        size = row.pop("input_size")
        rows.append({**row, "input_size": f"{size[0]}x{size[1]}", **by_scale})
    return pd.DataFrame(rows)


def to_markdown(df: pd.DataFrame) -> str:
    """A GitHub-flavoured Markdown table (no extra dependency such as tabulate)."""
    def cell(v: Any) -> str:
        if v is None or v is pd.NA or (isinstance(v, float) and pd.isna(v)):
            return ""
        if isinstance(v, float):
            return f"{v:.2f}"
        return str(v).replace("|", "\\|")

    lines = ["| " + " | ".join(df.columns) + " |", "|" + "---|" * len(df.columns)]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in df.itertuples(index=False)]
    return "\n".join(lines) + "\n"


def to_latex(df: pd.DataFrame, caption: str) -> str:
    def esc(v: Any) -> str:
        if v is None or v is pd.NA or (isinstance(v, float) and pd.isna(v)):
            return ""
        text = f"{v:.2f}" if isinstance(v, float) else str(v)
        for a, b in (("\\", r"\textbackslash{}"), ("_", r"\_"), ("&", r"\&"), ("%", r"\%"),
                     ("#", r"\#"), ("->", r"$\rightarrow$")):
            text = text.replace(a, b)
        return text

    head = " & ".join(esc(c) for c in df.columns) + r" \\"
    body = "\n".join(" & ".join(esc(v) for v in row) + r" \\" for row in df.itertuples(index=False))
    return ("\\begin{table}[t]\n\\centering\n\\caption{" + esc(caption) + "}\n"
            "\\begin{tabular}{" + "l" * len(df.columns) + "}\n\\hline\n" + head + "\n\\hline\n"
            + body + "\n\\hline\n\\end{tabular}\n\\end{table}\n")


def write_table(df: pd.DataFrame, out_dir: Path, name: str, title: str, note: str = "") -> None:
    """CSV, Markdown (with `note` under the title) and LaTeX."""
    atomic_write_with(out_dir / f"{name}.csv", lambda p: df.to_csv(p, index=False))
    note = f"{note}\n\n" if note else ""
    atomic_write_text(out_dir / f"{name}.md", f"# {title}\n\n{note}{to_markdown(df)}")
    atomic_write_text(out_dir / f"{name}.tex", to_latex(df, title))


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save_figure(fig: Any, path: Path) -> None:
    atomic_write_with(path, lambda p: fig.savefig(p, format="png", dpi=120,
                                                  bbox_inches="tight"))
    _pyplot().close(fig)


def plot_stages(df: pd.DataFrame, path: Path) -> None:
    """AP after each progressive stage, one line per final teacher order (mean over seeds,
    error bars one standard deviation); the student alone and direct distillation as markers at
    their epoch budget in units of stages. Labels go in the legend, never on the points."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7.5, 4.5))
    prog = df[df["method"] == METHODS["progressive"]]
    stats = prog.groupby(prog["chain"].map(tuple))["AP"].agg(["mean", "std"])
    chains = list(stats.index)
    finals = [c for c in chains if not any(len(o) > len(c) and o[: len(c)] == c for o in chains)]
    stage_epochs = (prog["epochs"] / prog["chain"].map(len)).min() if len(prog) else None
    for chain in finals:
        xs = [i + 1 for i in range(len(chain)) if chain[: i + 1] in stats.index]
        rows = stats.loc[[chain[:x] for x in xs]]
        ax.errorbar(xs, rows["mean"], yerr=rows["std"].fillna(0), marker="o", capsize=3,
                    label=" -> ".join(chain))
    top = max([len(c) for c in finals] + [1])
    if stage_epochs:
        markers = {METHODS["baseline"]: "s", METHODS["direct"]: "^"}
        dodge = {METHODS["baseline"]: -0.08, METHODS["direct"]: 0.08}  # beside the chains
        for method, marker in markers.items():
            sub = df[df["method"] == method]
            for k, ((teachers, epochs), g) in enumerate(sub.groupby(["teachers", "epochs"])):
                label = f"{method} {teachers}".strip() + f" ({epochs:g} ep)"
                x = epochs / stage_epochs + dodge[method] * (1 + 0.5 * (k % 3))
                ax.errorbar(x, g["AP"].mean(),
                            yerr=g["AP"].std(ddof=1) if len(g) > 1 else 0, marker=marker,
                            linestyle="none", capsize=3, label=label)
                top = max(top, math.ceil(epochs / stage_epochs))
        ax.set_xticks(range(1, top + 1))  # every marker sits over a tick
    ax.set_xlabel(f"stage ({stage_epochs:g} epochs each)" if stage_epochs else "stage")
    ax.set_ylabel("box AP (mean over seeds, bars: 1 sd)")
    ax.set_title("AP after each progressive stage")
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    _save_figure(fig, path)


def plot_frontier(main: pd.DataFrame, path: Path, device: str) -> None:
    """AP against latency and against GFLOPs for every model (mean over seeds), MTPD's student
    marked: the accuracy/speed frontier. Progressive stages other than MTPD's are left out."""
    plt = _pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.5), sharey=True)
    markers = {METHODS["teacher"]: "o", METHODS["baseline"]: "s", METHODS["direct"]: "^",
               METHODS["mtpd"]: "*"}
    shown = main[main["method"].isin(markers) & main["latency_ms"].notna()]
    for ax, x, label in ((axes[0], "latency_ms", f"latency (ms per image, batch 1, {device})"),
                         (axes[1], "GFLOPs", "GFLOPs (backbone, neck, head)")):
        for i, r in enumerate(shown.itertuples()):
            name = r.model if r.method == METHODS["teacher"] else f"{r.method} {r.teachers}"
            mtpd = r.method == METHODS["mtpd"]
            sd = getattr(r, "AP_sd", float("nan"))  # absent with one seed
            ax.errorbar(getattr(r, x), r.AP, yerr=0 if pd.isna(sd) else sd,
                        marker=markers[r.method], markersize=16 if mtpd else 7, capsize=3,
                        color="crimson" if mtpd else f"C{i % 10}", linestyle="none",
                        label=f"{name.strip()} ({r.epochs:g} ep)" if r.method !=
                        METHODS["teacher"] else name)
        ax.set_xlabel(label)
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("box AP (mean over seeds, bars: 1 sd)")
    axes[0].set_title("AP against latency (MTPD's student: red star)")
    axes[1].set_title("AP against GFLOPs")
    axes[1].legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    _save_figure(fig, path)


def plot_bgs(log: pd.DataFrame, path: Path) -> None:
    """Proxy scores per BGS round, one panel per seed; the chosen candidate highlighted."""
    plt = _pyplot()
    seeds = sorted(log["seed"].unique())
    fig, axes = plt.subplots(1, len(seeds), figsize=(5.5 * len(seeds), 4), squeeze=False)
    for ax, seed in zip(axes[0], seeds, strict=True):
        sub = log[log["seed"] == seed]
        for i, cand in enumerate(dict.fromkeys(sub["candidate"])):
            rows = sub[sub["candidate"] == cand]
            ax.scatter(rows["round"], rows["proxy_score"], label=cand, color=f"C{i}",
                       edgecolors=["black" if c else "none" for c in rows["chosen"]],
                       linewidths=1.5, s=45)
        ax.set_xticks(sorted(sub["round"].unique()))
        ax.set_xlabel("BGS round (0 = target alone)")
        ax.set_ylabel("proxy score")
        ax.set_title(f"seed {seed}: candidates (black edge = chosen)")
        ax.legend(fontsize=7)
    _save_figure(fig, path)


def write_experiment_tables(exp_dir: str | Path) -> pd.DataFrame:
    """Every table and plot of one experiment; returns its main table."""
    exp_dir = Path(exp_dir)
    layout, config = experiment_layout(exp_dir)
    tables, plots = Path(layout.tables_dir()), Path(layout.plots_dir())
    df = runs(exp_dir)
    if df.empty:
        raise ResultsError(f"{exp_dir} holds no metrics on the '{config['evaluation']['split']}' "
                         "split yet; run the pipeline first")
    cost_file = Path(layout.cost_file())
    if not cost_file.is_file():
        raise ResultsError(f"{cost_file} is missing (each network's parameters, GFLOPs and "
                         "latency); run the pipeline's measure_cost job first")
    cost = read_json(cost_file)
    main, won = verdict(add_cost_columns(main_table(df), cost), df)
    title = f"{config['experiment']}: teachers, the student alone, direct and progressive"
    notes = [cost_summary(main, cost), won] + export_notes(exp_dir, config["train"]["seeds"])
    write_table(main, tables, "main", title, "\n\n".join(notes))
    write_table(cost_table(cost), tables, "cost",
                f"{config['experiment']}: what each network costs to run (mtpd/cost.py)")
    plot_frontier(main, plots / "frontier.png", cost["device"])
    run_cols = ["model", "method", "teachers", "seed", "epochs"] + STATS + ["train_minutes"]
    write_table(df[[c for c in run_cols if c in df]].dropna(axis=1, how="all"), tables, "runs",
                f"{config['experiment']}: every model and seed")
    plot_stages(df, plots / "stages.png")
    results = {s: Path(layout.bgs_file(s, "result")) for s in config["train"]["seeds"]}
    results = {s: read_json(p) for s, p in results.items() if p.is_file()}
    if results:
        logs, costs = zip(*(bgs_tables(r, s) for s, r in results.items()), strict=True)
        log = pd.concat(logs, ignore_index=True)
        write_table(log, tables, "bgs_log", "Backward Greedy Selection log")
        write_table(pd.concat(costs, ignore_index=True), tables, "bgs_cost",
                    "Stage trainings: BGS vs exhaustive search")
        plot_bgs(log, plots / "bgs.png")
        ranked = [{"seed": s, "rank": i + 1, "chain": " -> ".join(e["chain"]),
                   "proxy_score": e["score"], "bgs_order": e["chain"] == r["order"]}
                  for s, r in results.items() if r.get("exhaustive")
                  for i, e in enumerate(r["exhaustive"]["scores"])]
        if ranked:
            write_table(pd.DataFrame(ranked), tables, "bgs_exhaustive",
                        "Exhaustive search on the same proxy (BGS's order marked)")
    if config["streaming"]["enabled"]:
        write_table(streaming_table(exp_dir), tables, "streaming",
                    "Streaming AP at 30 FPS: the best input scale per model")
    expected = layout.table_files(config["bgs"]["enabled"], config["bgs"]["exhaustive"],
                                  config["streaming"]["enabled"])
    missing = [f for f in expected if not Path(f).is_file()]
    if missing:
        raise ResultsError(f"tables of {exp_dir} are incomplete (no {', '.join(missing)}); "
                         "run the pipeline to the end first")
    return main


def write_tables(path: str | Path) -> list[Path]:
    """Tables for one experiment directory, or for every experiment under a results root
    (plus `summary.*` there, all main tables side by side). Returns the experiments done."""
    path = Path(path)
    if (path / "experiment.json").is_file():
        write_experiment_tables(path)
        return [path]
    experiments = sorted(p.parent for p in path.glob("*/experiment.json"))
    if not experiments:
        raise ResultsError(f"{path} is neither an experiment directory (with experiment.json) "
                         f"nor a results root holding some (e.g. {ROOT}/)")
    mains = [write_experiment_tables(e).assign(experiment=e.name) for e in experiments]
    summary = pd.concat(mains, ignore_index=True)
    summary = summary[["experiment"] + [c for c in summary.columns if c != "experiment"]]
    write_table(summary, path, "summary", "Every experiment's main table, side by side")
    return experiments
