"""Result tables (CSV, Markdown, LaTeX) and plots from metrics JSONs and the BGS result.

Written by the DAG's last rule:
* `tables/main.*`: teachers, the student alone, direct distillation, every progressive stage and
  the MTPD run (the BGS-chosen order), with AP columns, total epochs and wall time;
* `tables/bgs_log.*` and `tables/bgs_cost.*`: every BGS round's candidates and scores, and how
  many stage trainings the search cost against exhaustive search;
* `plots/stages.png` (AP after each progressive stage) and `plots/bgs.png` (proxy per round).
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pandas as pd

from mtpd.io import atomic_write_text, atomic_write_with

MAIN_COLUMNS = ["model", "method", "teachers", "AP", "AP50", "AP75", "APs", "APm", "APl",
                "mask_AP", "epochs", "train_minutes", "split"]
METHOD_ORDER = {"teacher": 0, "baseline": 1, "direct": 2, "progressive": 3, "MTPD (BGS)": 4}


def _read_json(path: str | Path) -> dict[str, Any]:
    try:
        return json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise ValueError(f"{path} cannot be read: {e}; re-run the rule that writes it") from e


def load_metrics(paths: list[str | Path]) -> pd.DataFrame:
    return pd.DataFrame([{**_read_json(p), "metrics_file": str(p)} for p in paths])


def _chain_seconds(df: pd.DataFrame) -> pd.Series:
    """Wall time of a progressive model = the sum of its chain's stages."""
    by_chain = {tuple(c): s for c, s in zip(df.get("chain", []), df["train_seconds"])
                if isinstance(c, list)}
    def total(row: pd.Series) -> float:
        chain = row.get("chain")
        if not isinstance(chain, list):
            return row["train_seconds"]
        parts = [by_chain.get(tuple(chain[: i + 1])) for i in range(len(chain))]
        return sum(parts) if None not in parts else float("nan")
    return df.apply(total, axis=1)


def main_table(df: pd.DataFrame, bgs_order: list[str] | None = None) -> pd.DataFrame:
    """One row per model: teachers, then the student by method and epochs."""
    df = df.copy()
    for col in MAIN_COLUMNS + ["chain", "train_seconds"]:
        if col not in df:
            df[col] = None
    df["train_seconds"] = pd.to_numeric(df["train_seconds"])
    df["train_minutes"] = (_chain_seconds(df) / 60).round(2)
    if bgs_order:
        is_mtpd = df["chain"].apply(lambda c: isinstance(c, list) and c == list(bgs_order))
        mtpd_rows = df[is_mtpd].assign(method="MTPD (BGS)")
        df = pd.concat([df, mtpd_rows], ignore_index=True)
    df["_order"] = df["method"].map(METHOD_ORDER).fillna(9)
    df = df.sort_values(["_order", "epochs", "teachers", "model"], na_position="first")
    out = df[MAIN_COLUMNS].reset_index(drop=True)
    if out["mask_AP"].isna().all():
        out = out.drop(columns=["mask_AP"])
    return out


def bgs_tables(result: dict[str, Any]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The BGS log (round, candidate, chain, proxy score, chosen) and the cost table."""
    rows = []
    for d in result["rounds"]:
        order = " -> ".join(d["order"])
        if d["round"] == 1:
            rows.append({"round": 0, "candidate": "(target)", "chain": order,
                         "proxy_score": d["order_score"], "chosen": True})
        for cand, score in d["candidates"].items():
            rows.append({"round": d["round"], "candidate": cand,
                         "chain": " -> ".join([cand, *d["order"]]), "proxy_score": score,
                         "chosen": cand == d["chosen"]})
    log = pd.DataFrame(rows, columns=["round", "candidate", "chain", "proxy_score", "chosen"])
    c = result["cost"]
    cost = pd.DataFrame([
        {"search": "BGS", "chains": c["bgs_chains"],
         "stage_trainings_without_reuse": c["bgs_stage_trainings_without_reuse"],
         "stage_trainings_with_reuse": c["bgs_stage_trainings_with_reuse"]},
        {"search": "exhaustive", "chains": c["exhaustive_chains"],
         "stage_trainings_without_reuse": c["exhaustive_stage_trainings_without_reuse"],
         "stage_trainings_with_reuse": c["exhaustive_stage_trainings_with_reuse"]},
    ])
    return log, cost


def to_markdown(df: pd.DataFrame) -> str:
    """A GitHub-flavoured Markdown table (no extra dependency such as tabulate)."""
    def cell(v: Any) -> str:
        if v is None or (isinstance(v, float) and pd.isna(v)):
            return ""
        if isinstance(v, float):
            return f"{v:.2f}"
        return str(v).replace("|", "\\|")

    lines = ["| " + " | ".join(df.columns) + " |", "|" + "---|" * len(df.columns)]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in df.itertuples(index=False)]
    return "\n".join(lines) + "\n"


def to_latex(df: pd.DataFrame, caption: str) -> str:
    def esc(v: Any) -> str:
        if v is None or (isinstance(v, float) and pd.isna(v)):
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


def write_table(df: pd.DataFrame, out_dir: Path, name: str, title: str) -> None:
    atomic_write_with(out_dir / f"{name}.csv", lambda p: df.to_csv(p, index=False))
    atomic_write_text(out_dir / f"{name}.md", f"# {title}\n\n{to_markdown(df)}")
    atomic_write_text(out_dir / f"{name}.tex", to_latex(df, title))


def _save_figure(fig: Any, path: Path) -> None:
    import matplotlib.pyplot as plt

    atomic_write_with(path, lambda p: fig.savefig(p, format="png", dpi=120,
                                                  bbox_inches="tight"))
    plt.close(fig)


def plot_stages(df: pd.DataFrame, path: Path) -> None:
    """AP after each progressive stage (one line per teacher order); the student alone and
    direct distillation as points at their epoch budget, in units of stages."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.5, 4))
    prog = df[df["chain"].apply(lambda c: isinstance(c, list))]
    ap = {tuple(c): a for c, a in zip(prog["chain"], prog["AP"])}
    stage_epochs = min((e / len(c) for c, e in zip(prog["chain"], prog["epochs"])), default=None)
    finals = [c for c in ap if not any(len(o) > len(c) and o[: len(c)] == c for o in ap)]
    for chain in finals:
        xs = [i + 1 for i in range(len(chain)) if chain[: i + 1] in ap]
        ax.plot(xs, [ap[chain[: x]] for x in xs], marker="o", label=" -> ".join(chain))
    if stage_epochs:
        for method, marker in (("baseline", "s"), ("direct", "^")):
            rows = df[df["method"] == method]
            for _, row in rows.iterrows():
                label = "student alone" if method == "baseline" else f"direct {row['teachers']}"
                ax.scatter(row["epochs"] / stage_epochs, row["AP"], marker=marker, color="grey")
                ax.annotate(label, (row["epochs"] / stage_epochs, row["AP"]), fontsize=7,
                            xytext=(4, -8), textcoords="offset points")
    ax.set_xlabel("stage (epochs / epochs per stage)")
    ax.set_ylabel("box AP")
    ax.set_title("AP after each progressive stage")
    ax.legend(fontsize=7)
    _save_figure(fig, path)


def plot_bgs(log: pd.DataFrame, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for _, row in log.iterrows():
        ax.scatter(row["round"], row["proxy_score"], color="C1" if row["chosen"] else "C0")
        ax.annotate(row["candidate"], (row["round"], row["proxy_score"]), fontsize=7,
                    xytext=(4, 2), textcoords="offset points")
    ax.set_xticks(sorted(set(log["round"])))
    ax.set_xlabel("BGS round (0 = target alone)")
    ax.set_ylabel("proxy score")
    ax.set_title("Backward Greedy Selection: candidates per round (orange = chosen)")
    _save_figure(fig, path)


def write_tables(metrics: list[str], out_dir: str | Path, bgs: str | None = None) -> None:
    out_dir = Path(out_dir)
    df = load_metrics([m for m in metrics if m != bgs])
    result = _read_json(bgs) if bgs else None
    main = main_table(df, result["order"] if result else None)
    write_table(main, out_dir / "tables", "main",
                "mtpd results: teachers, the student alone, direct and progressive distillation")
    plot_stages(df, out_dir / "plots" / "stages.png")
    if result:
        log, cost = bgs_tables(result)
        write_table(log, out_dir / "tables", "bgs_log", "Backward Greedy Selection log")
        write_table(cost, out_dir / "tables", "bgs_cost",
                    "Stage trainings: BGS vs exhaustive search")
        plot_bgs(log, out_dir / "plots" / "bgs.png")
        if result.get("exhaustive"):
            ranked = pd.DataFrame([{"rank": i + 1, "chain": " -> ".join(r["chain"]),
                                    "proxy_score": r["score"],
                                    "bgs_order": r["chain"] == result["order"]}
                                   for i, r in enumerate(result["exhaustive"]["scores"])])
            write_table(ranked, out_dir / "tables", "bgs_exhaustive",
                        "Exhaustive search on the same proxy (BGS's order marked)")
