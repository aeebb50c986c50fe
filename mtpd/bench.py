"""The accuracy benchmark's report: is progressive distillation better than direct, and does BGS
find the best order? Read from an experiment's results (config/bench.yaml) with several seeds.

* every method's AP as mean and standard deviation over seeds (student alone, direct from each
  teacher at each budget, every teacher order, MTPD in BGS's order);
* MTPD against the best direct run at the same total epochs: the difference, and how many
  standard deviations it is (paired by seed, and against the pooled spread);
* where BGS's order ranks among all orders, per seed, for the BGS that ran (its `bgs.control`)
  and for the other reading replayed from the same proxy scores (`bgs.exhaustive` records every
  chain's proxy score, so no training is needed to replay it).
"""
from __future__ import annotations

import statistics
from pathlib import Path
from typing import Any

import pandas as pd

from mtpd.bgs import run_bgs
from mtpd.io import atomic_write_text, atomic_write_with
from mtpd.tables import METHOD_RANK, METHODS, experiment_layout, read_json, runs, to_markdown


def _mean_sd(values: list[float]) -> tuple[float, float]:
    return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else float("nan")


def method_table(df: pd.DataFrame) -> pd.DataFrame:
    """Mean, sd and n of AP for every (method, teachers, epochs), teachers included."""
    rows = []
    df = df.assign(who=df["teachers"].where(df["teachers"] != "", df["model"]))
    for (method, who, epochs), g in df.groupby(["method", "who", "epochs"], sort=False):
        if method == METHODS["mtpd"]:
            continue  # MTPD's orders differ by seed: reported on its own
        mean, sd = _mean_sd(list(g["AP"]))
        rows.append({"method": method, "teachers": who, "epochs": int(epochs),
                     "AP_mean": mean, "AP_sd": sd, "seeds": len(g)})
    out = pd.DataFrame(rows)
    out["_rank"] = out["method"].map(METHOD_RANK)
    out = out.sort_values(["_rank", "epochs", "teachers"], kind="stable")
    return out.drop(columns="_rank").reset_index(drop=True)


def replay(result: dict[str, Any], pool: list[str], margin: float, max_stages: int,
           control: str) -> tuple[str, ...] | None:
    """The order BGS would have chosen with `control`, from the recorded proxy scores (None if
    a chain it needs was never scored, e.g. a control chain of a search that ran without)."""
    scores = {tuple(e["chain"]): e["score"] for e in result["exhaustive"]["scores"]}
    for d in result["rounds"]:  # control chains and the target alone are not in `exhaustive`
        scores.setdefault(tuple(d["order"]), d["order_score"])
        if d.get("control_score") is not None:
            scores[(d["order"][0], *d["order"])] = d["control_score"]
    target = result["rounds"][0]["order"][-1]
    try:
        decisions = run_bgs(pool, target, scores.__getitem__, margin, max_stages, control)
    except KeyError:
        return None
    return decisions[-1].new_order


def _rank(ap: dict[tuple[str, ...], float], chain: tuple[str, ...],
          same_length: bool = False) -> int:
    """1 = the best of the orders trained in full (ties share the better rank)."""
    pool = {c: a for c, a in ap.items() if not same_length or len(c) == len(chain)}
    return 1 + sum(a > pool[chain] for a in pool.values())


def report(exp_dir: str | Path) -> dict[str, Any]:
    """Writes `report.md` and `report.csv` into the experiment directory; returns the figures."""
    exp_dir = Path(exp_dir)
    layout, config = experiment_layout(exp_dir)
    df = runs(exp_dir)
    df = df[df["epochs"].notna()]
    bgs, stage = config["bgs"], config["student"]["epochs"]
    ran, other = bgs["control"], "none" if bgs["control"] != "none" else "repeat_first"
    table = method_table(df)
    prog = df[df["method"] == METHODS["progressive"]]
    direct = df[df["method"] == METHODS["direct"]]
    per_seed, paired = [], []
    for seed in config["train"]["seeds"]:
        result = read_json(layout.bgs_file(seed, "result"))
        ap = {tuple(c): a for c, a in zip(prog[prog["seed"] == seed]["chain"],
                                          prog[prog["seed"] == seed]["AP"], strict=True)}
        orders = {ran: tuple(result["order"]),
                  other: replay(result, bgs["pool"], bgs["margin"], bgs["max_stages"], other)}
        best = max(ap, key=ap.get)
        row: dict[str, Any] = {"seed": seed, "exhaustive_best": " -> ".join(best),
                               "exhaustive_best_AP": ap[best]}
        for name, order in orders.items():
            key = f"bgs_{name}"
            order = order or ()
            row[key] = " -> ".join(order) or "(not replayable)"
            row[f"{key}_AP"] = ap.get(order)
            row[f"{key}_rank"] = _rank(ap, order) if order in ap else None
            row[f"{key}_rank_same_length"] = _rank(ap, order, True) if order in ap else None
            row[f"{key}_is_best"] = order == best
        epochs = stage * len(orders[ran])
        d = direct[(direct["seed"] == seed) & (direct["epochs"] == epochs)]
        if len(d) and orders[ran] in ap:
            row["best_direct_AP"] = d["AP"].max()
            row["mtpd_minus_best_direct"] = ap[orders[ran]] - d["AP"].max()
            paired.append(row["mtpd_minus_best_direct"])
        per_seed.append(row)
    seeds = pd.DataFrame(per_seed)
    summary = summarize(table, seeds, paired, ran, other, stage)
    write_report(exp_dir, table, seeds, summary)
    return summary


def summarize(table: pd.DataFrame, seeds: pd.DataFrame, paired: list[float], ran: str,
              other: str, stage: int) -> dict[str, Any]:
    """The headline figures: MTPD vs the best direct run, best order vs best direct, BGS."""
    def best_of(method: str, epochs: int | None = None) -> pd.Series | None:
        sub = table[table["method"] == method]
        if epochs is not None:
            sub = sub[sub["epochs"] == epochs]
        return None if sub.empty else sub.loc[sub["AP_mean"].idxmax()]

    s: dict[str, Any] = {"bgs_ran": ran, "bgs_replayed": other}
    mtpd = list(seeds[f"bgs_{ran}_AP"].dropna())
    if mtpd:
        s["mtpd_AP_mean"], s["mtpd_AP_sd"] = _mean_sd(mtpd)
    if paired:
        mean, sd = _mean_sd(paired)
        s["mtpd_minus_best_direct_mean"], s["mtpd_minus_best_direct_sd"] = mean, sd
        s["mtpd_minus_best_direct_in_paired_sd"] = mean / sd if sd and sd == sd else None
    # the longest chains' budget: teachers and long baselines may have trained for longer
    chains = table[table["method"] == METHODS["progressive"]]
    top = int(chains["epochs"].max()) if not chains.empty else int(table["epochs"].max())
    order, direct = best_of(METHODS["progressive"], top), best_of(METHODS["direct"], top)
    if order is not None and direct is not None:
        pooled = ((order["AP_sd"] ** 2 + direct["AP_sd"] ** 2) / 2) ** 0.5
        s.update(best_order=order["teachers"], best_order_AP=order["AP_mean"],
                 best_direct=f"{direct['teachers']} ({top} epochs)",
                 best_direct_AP=direct["AP_mean"],
                 best_order_minus_best_direct=order["AP_mean"] - direct["AP_mean"],
                 best_order_minus_best_direct_in_pooled_sd=(
                     (order["AP_mean"] - direct["AP_mean"]) / pooled if pooled else None))
    gaps = {}
    for _, r in table[table["method"] == METHODS["teacher"]].iterrows():
        alone = best_of(METHODS["baseline"], int(r["epochs"]))
        if alone is not None:
            gaps[r["teachers"]] = float(r["AP_mean"] - alone["AP_mean"])
    if gaps:
        s["teacher_minus_student_alone_at_equal_epochs"] = gaps
    for name in (ran, other):
        s[f"bgs_{name}_picks_exhaustive_best"] = int(seeds[f"bgs_{name}_is_best"].sum())
        s[f"bgs_{name}_mean_rank"] = seeds[f"bgs_{name}_rank"].mean()
    s["seeds"] = len(seeds)
    return s


def write_report(exp_dir: Path, table: pd.DataFrame, seeds: pd.DataFrame,
                 summary: dict[str, Any]) -> None:
    atomic_write_with(exp_dir / "report.csv", lambda p: table.to_csv(p, index=False))
    atomic_write_with(exp_dir / "report_seeds.csv", lambda p: seeds.to_csv(p, index=False))

    def show(v: Any, signed: bool) -> str:  # differences ("minus") carry their sign
        if isinstance(v, dict):
            return ", ".join(f"{k} {show(x, signed)}" for k, x in v.items())
        return (f"{v:+.2f}" if signed else f"{v:.2f}") if isinstance(v, float) else str(v)

    lines = [f"# Accuracy benchmark: {exp_dir.name}", ""]
    lines += [f"- {k}: {show(v, 'minus' in k)}" for k, v in summary.items()]
    lines += ["", "## AP by method (mean and sd over seeds)", "", to_markdown(table),
              "## Per seed: BGS's orders and the best of all orders (val AP)", "",
              to_markdown(seeds)]
    atomic_write_text(exp_dir / "report.md", "\n".join(lines))
