"""The accuracy benchmark's report (config/bench.yaml): where the paper's precondition holds, does
progressive distillation beat direct distillation at equal total epochs, which variant of it
helps, does BGS find the best order, and can its proxy be trusted? Read from an experiment's
results with several seeds; every comparison is paired by seed.

* **precondition**: each teacher's own AP, and the student after direct distillation from it; the
  final (strongest) teacher must transfer worse than a smaller one, or a chain has nothing to fix;
* **main table**: every student at the chains' total epochs (mean, sd), its paired difference to
  the best direct run, the best student marked;
* **variants** (ours): a continued LR schedule against the paper's restarts, chain by chain;
  the target each target rule picks, and how BGS's order from it scores in full;
* **BGS**: its order's val rank among all orders trained in full, per seed, and the orders it
  would have chosen with each proxy (replayed from the recorded proxy metrics);
* **proxy validation**: Kendall's tau between each proxy's score of a chain and the same chain
  trained in full, scored on the proxy split (which chooses the proxy) and on val (which
  reports), over the pairs of chains of the same seed.

Settings are chosen on the proxy split; the val split is read here, once, for the report.
`collect` copies an experiment's small JSON records (never checkpoints) elsewhere, e.g. into
`benchmarks/results/`, so the report can be rebuilt from the repository.
"""
from __future__ import annotations

import math
import shutil
import statistics
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import pandas as pd

from mtpd.bgs import pick_target, run_bgs
from mtpd.bgs_steps import PROXIES as BGS_PROXIES
from mtpd.io import atomic_write_json, atomic_write_text
from mtpd.layout import FULL_SCHEDULES, Chain, describe, metrics_path
from mtpd.tables import (
    METHODS,
    _pyplot,
    _save_figure,
    experiment_layout,
    read_json,
    runs,
    to_markdown,
)

BySeed = dict[int, float]


def mean_sd(values: Iterable[float]) -> tuple[float, float, int]:
    values = [v for v in values if v == v]
    if not values:
        return float("nan"), float("nan"), 0
    sd = statistics.stdev(values) if len(values) > 1 else float("nan")
    return statistics.fmean(values), sd, len(values)


def paired(a: BySeed, b: BySeed) -> tuple[float, float, int]:
    """Mean, sd and number of the differences a - b over the seeds both have."""
    return mean_sd(a[s] - b[s] for s in sorted(set(a) & set(b)))


def t_stat(mean: float, sd: float, n: int) -> float:
    """A paired difference over its standard error (NaN under 2 seeds)."""
    if n < 2 or mean != mean:
        return float("nan")
    if not sd:
        return math.copysign(math.inf, mean) if mean else float("nan")
    return mean / (sd / math.sqrt(n))


def pm(mean: float, sd: float, signed: bool = False) -> str:
    """`12.34 +- 0.56` (a difference with its sign)."""
    if mean != mean:
        return ""
    text = f"{mean:+.2f}" if signed else f"{mean:.2f}"
    return text + (f" +- {sd:.2f}" if sd == sd else "")


def kendall_counts(x: list[float], y: list[float]) -> tuple[int, int, int, int, int]:
    """Concordant, discordant, tied-in-x-only, tied-in-y-only and total pairs."""
    c = d = tx = ty = n = 0
    for i in range(len(x)):
        for j in range(i + 1, len(x)):
            n += 1
            dx, dy = x[i] - x[j], y[i] - y[j]
            if dx == 0 and dy == 0:
                continue
            if dx == 0:
                tx += 1
            elif dy == 0:
                ty += 1
            elif (dx > 0) == (dy > 0):
                c += 1
            else:
                d += 1
    return c, d, tx, ty, n


def kendall_tau(groups: Iterable[tuple[list[float], list[float]]]) -> tuple[float, int]:
    """Kendall's tau-b over the pairs within each group (a seed's chains: a proxy ranks chains
    of one seed), and the number of pairs; NaN without an untied pair."""
    c = d = tx = ty = n = 0
    for x, y in groups:
        counts = kendall_counts(x, y)
        c, d, tx, ty, n = (a + b for a, b in zip((c, d, tx, ty, n), counts, strict=True))
    denominator = math.sqrt((c + d + tx) * (c + d + ty))
    return ((c - d) / denominator if denominator else float("nan")), n


# --- reading the tree --------------------------------------------------------------------------
class Bench:
    """An experiment's records, keyed the way the report compares them."""

    def __init__(self, exp_dir: str | Path):
        self.dir = Path(exp_dir)
        self.layout, self.config = experiment_layout(self.dir)
        self.seeds: list[int] = self.config["train"]["seeds"]
        self.stage: int = self.config["student"]["epochs"]
        self.bgs = self.config["bgs"]
        self.proxy_split: str = self.bgs["proxy_split"]
        self.teachers: dict[str, Any] = self.config["teachers"]
        self.mtpd_schedule = FULL_SCHEDULES[self.config["distill"].get("stage_schedule",
                                                                       "restart")]
        # Where BGS's candidate chains were trained: short proxy stages, or MTPD's own schedule.
        self.bgs_where = ("proxy" if self.bgs.get("proxy_schedule", "short") == "short"
                          else self.mtpd_schedule)
        df = runs(self.dir)
        self.df = df[df["epochs"].notna()]
        self.budget = self.stage * self.bgs["max_stages"]
        self.results = {s: read_json(self.layout.bgs_file(s, "result")) for s in self.seeds
                        if Path(self.layout.bgs_file(s, "result")).is_file()}

    def ap(self, method: str, teachers: str, epochs: int | None = None) -> BySeed:
        """Val AP by seed of one student run (`teachers`: a chain as `a -> b`, a teacher)."""
        sub = self.df[(self.df["method"] == METHODS[method]) & (self.df["teachers"] == teachers)]
        if epochs is not None:
            sub = sub[sub["epochs"] == epochs]
        return {int(s): float(a) for s, a in zip(sub["seed"], sub["AP"], strict=True)}

    def chains(self, schedule: str) -> list[Chain]:
        sub = self.df[self.df["method"] == METHODS[schedule]]
        return sorted({tuple(c) for c in sub["chain"]}, key=lambda c: (len(c), c))

    def record(self, path: str) -> dict[str, Any] | None:
        return read_json(path) if Path(path).is_file() else None

    def proxy_scores(self, seed: int, where: str, key: str) -> dict[Chain, float]:
        """Score (`key` of the metrics: AP or neg_feature_loss) of each chain of a seed on the
        proxy split: `proxy` = BGS's proxy schedule, else the chains trained in full."""
        out = {}
        for path in sorted(Path(self.layout.seed_dir(seed)).glob(
                f"{where}/**/metrics_{self.proxy_split}.json")):
            rec = read_json(path)
            if key in rec:
                out[describe(str(path)).chain] = float(rec[key])
        return out

    def split_ap(self, schedule: str, chain: Chain, split: str) -> BySeed:
        """AP by seed of a chain trained in full, on any split it was evaluated on."""
        out = {}
        for seed in self.seeds:
            rec = self.record(metrics_path(self.layout.stage_model(seed, schedule, chain), split))
            if rec:
                out[seed] = float(rec["AP"])
        return out

    def val_ap(self, seed: int, schedule: str = "progressive") -> dict[Chain, float]:
        sub = self.df[(self.df["method"] == METHODS[schedule]) & (self.df["seed"] == seed)]
        return {tuple(c): float(a) for c, a in zip(sub["chain"], sub["AP"], strict=True)}

    def proxies(self) -> dict[str, tuple[str, str]]:
        """Each proxy BGS can use -> (where its chains were trained, metrics key): the short
        proxy stages with either score, and the chains trained in full (restarted), on the
        proxy split."""
        short = {f"{name}, {self.bgs['proxy_epochs']} ep": ("proxy", key)
                 for name, key in BGS_PROXIES.items()}
        return {**short, "box_ap, full schedule": ("progressive", BGS_PROXIES["box_ap"])}

    def target(self, seed: int, where: str, rule: str | None = None) -> str | None:
        """The target BGS picks with target rule `rule` (default bgs.target) when its chains
        were trained in `where` (`proxy` reads their box AP whatever the proxy, as
        `mtpd.bgs_steps.write_target` does); None when a pool teacher's score is missing."""
        rule, pool = rule or self.bgs["target"], list(self.bgs["pool"])
        if rule not in ("proxy", "best"):
            return rule
        scores = ({c[0]: v for c, v in self.proxy_scores(seed, where, "AP").items()
                   if len(c) == 1} if rule == "proxy" else self.teacher_ap(self.proxy_split))
        return pick_target(scores, pool) if all(t in scores for t in pool) else None

    def bgs_order(self, seed: int, where: str, key: str, rule: str | None = None
                  ) -> Chain | None:
        """The order BGS chooses, replayed from the recorded scores (`key` of the chains in
        `where`) with target rule `rule`; None when it needs a chain never scored."""
        scores = self.proxy_scores(seed, where, key)
        target = self.target(seed, where, rule)
        if target is None:
            return None
        try:
            return run_bgs(self.bgs["pool"], target, scores.__getitem__, self.bgs["margin"],
                           self.bgs["max_stages"], self.bgs["control"])[-1].new_order
        except KeyError:  # a chain that proxy never scored
            return None

    def teacher_ap(self, split: str) -> dict[str, float]:
        out = {}
        for t in self.teachers:
            rec = self.record(metrics_path(self.layout.teacher_model(t), split))
            if rec:
                out[t] = float(rec["AP"])
        return out


def arrow(chain: Iterable[str]) -> str:
    return " -> ".join(chain)


# --- the report's sections ---------------------------------------------------------------------
def precondition(b: Bench) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Each teacher's own AP, the student after one stage and after direct distillation from it at
    the budget; the final teacher (the strongest) against each other teacher, paired."""
    own = b.teacher_ap(b.config["evaluation"]["split"])
    pool = [t for t in b.bgs["pool"] if t in own]
    final = max(pool, key=own.get)
    direct_final = b.ap("direct", final, b.budget)
    rows = []
    for t in pool:
        direct = b.ap("direct", t, b.budget)
        one = mean_sd(b.ap("progressive", t, b.stage).values())
        d = mean_sd(direct.values())
        diff = paired(direct_final, direct) if t != final else (float("nan"),) * 2 + (0,)
        rows.append({"teacher": t + (" (final)" if t == final else ""), "teacher_AP": own[t],
                     f"one stage, {b.stage} ep": pm(*one[:2]),
                     f"direct, {b.budget} ep": pm(*d[:2]),
                     "direct from final minus this": pm(*diff[:2], signed=True),
                     "t": t_stat(*diff)})
    table = pd.DataFrame(rows)
    others = [r for r in rows if not r["teacher"].endswith("(final)")]
    best_other = max((t for t in pool if t != final),
                     key=lambda t: mean_sd(b.ap("direct", t, b.budget).values())[0])
    diff = paired(direct_final, b.ap("direct", best_other, b.budget))
    summary = {"final_teacher": final, "best_other_direct_teacher": best_other,
               "direct_final_minus_best_other": diff[:2],
               "precondition_holds": bool(others) and t_stat(*diff) < -2}
    return table, summary


def main_table(b: Bench) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Every student at the budget, with its paired difference to the best direct run."""
    runs_: list[tuple[str, str, BySeed]] = [
        (METHODS["baseline"], "", b.ap("baseline", "", b.budget))]
    directs = {t: b.ap("direct", t, b.budget) for t in b.config["distill"]["direct"]}
    runs_ += [(METHODS["direct"], t, ap) for t, ap in directs.items()]
    for schedule in ("progressive", "continued"):
        runs_ += [(METHODS[schedule], arrow(c), b.ap(schedule, arrow(c), b.budget))
                  for c in b.chains(schedule) if len(c) * b.stage == b.budget]
    mtpd = {s: b.val_ap(s, b.mtpd_schedule).get(tuple(r["order"]), float("nan"))
            for s, r in b.results.items()}
    mtpd_orders = " | ".join(dict.fromkeys(arrow(r["order"]) for r in b.results.values()))
    runs_.append((METHODS["mtpd"], mtpd_orders, {s: a for s, a in mtpd.items() if a == a}))
    best_direct = max(directs, key=lambda t: mean_sd(directs[t].values())[0])
    rows = []
    for method, teachers, ap in runs_:
        m, sd, n = mean_sd(ap.values())
        diff = paired(ap, directs[best_direct])
        rows.append({"method": method, "teachers": teachers, "AP": m, "AP_sd": sd, "seeds": n,
                     f"minus best direct ({best_direct})":
                     pm(*diff[:2], signed=True) if method != METHODS["direct"] or
                     teachers != best_direct else "0",
                     "_diff": diff})
    table = pd.DataFrame(rows)
    best = int(table["AP"].idxmax())
    table["best"] = ["**best**" if i == best else "" for i in range(len(table))]
    prog = table[table["method"].isin([METHODS["progressive"], METHODS["continued"]])]
    summary: dict[str, Any] = {"best_direct": best_direct,
                               "best_student": f"{table.loc[best, 'method']} "
                                               f"{table.loc[best, 'teachers']}".strip()}
    for label, sub in (("best_progressive_variant", prog),
                       ("best_paper_order", prog[prog["method"] == METHODS["progressive"]]),
                       ("mtpd", table[table["method"] == METHODS["mtpd"]])):
        if len(sub) and sub["AP"].notna().any():
            row = sub.loc[sub["AP"].idxmax()]
            summary[label] = f"{row['method']}: {row['teachers']}"
            summary[f"{label}_minus_best_direct"] = row["_diff"][:2]
    return table.drop(columns=["_diff"]), summary


def schedules(b: Bench) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Each continued chain against the same chain restarted (the paper), paired: on the proxy
    split, which chooses the schedule, and on val, which reports it."""
    rows, proxy_diffs = [], []
    for chain in b.chains("continued"):
        cont, restart = (b.ap(s, arrow(chain), b.stage * len(chain))
                         for s in ("continued", "progressive"))
        on_proxy = paired(*(b.split_ap(s, chain, b.proxy_split)
                            for s in ("continued", "progressive")))
        if on_proxy[2]:
            proxy_diffs.append(on_proxy[0])
        rows.append({"chain": arrow(chain), "epochs": b.stage * len(chain),
                     "restart (paper)": pm(*mean_sd(restart.values())[:2]),
                     "continued (ours)": pm(*mean_sd(cont.values())[:2]),
                     "continued minus restart": pm(*paired(cont, restart)[:2], signed=True),
                     "the same on the proxy split": pm(*on_proxy[:2], signed=True)})
    chosen = ("continue" if statistics.fmean(proxy_diffs) > 0 else "restart") \
        if proxy_diffs else None
    return pd.DataFrame(rows), {"stage_schedule_chosen_on_proxy": chosen}


def target_rules(b: Bench) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Per seed: the target each rule picks and the order BGS then chooses (replayed with its
    proxy as run), scored in full on the proxy split (which chooses the rule) and on val
    (which reports it)."""
    key = BGS_PROXIES[b.bgs["proxy"]]
    rows, on_proxy = [], {"best": [], "proxy": []}
    for seed in b.seeds:
        full, val = b.proxy_scores(seed, "progressive", "AP"), b.val_ap(seed)
        row: dict[str, Any] = {"seed": seed}
        for rule in on_proxy:
            order = b.bgs_order(seed, b.bgs_where, key, rule)
            row[f"target: {rule}"] = order[-1] if order else None
            row[f"BGS's order ({rule})"] = arrow(order) if order else ""
            row[f"proxy split ({rule})"] = full.get(order, float("nan"))
            row[f"val ({rule})"] = val.get(order, float("nan"))
            on_proxy[rule].append(full.get(order, float("nan")))
        rows.append(row)
    means = {rule: mean_sd(v)[0] for rule, v in on_proxy.items()}
    chosen = max(means, key=lambda r: means[r] if means[r] == means[r] else -math.inf)
    return pd.DataFrame(rows), {"target_rule_chosen_on_proxy": chosen}


def proxy_validation(b: Bench) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Kendall's tau between each proxy's score of a chain and two references for the same chain
    trained in full (restarted stages, the schedule BGS's chains stand for): its AP on the proxy
    split, which chooses the proxy off val (does a cheap proxy rank as the full schedule
    would?), and its val AP, which reports. Over the pairs within a seed, on the chains every
    proxy scored, and for the full schedule also on every chain trained in full. The feature
    loss compares chains ending at the same teacher only (a loss to another teacher is on
    another scale)."""
    proxies = b.proxies()
    # per seed: each proxy's scores, val AP and the full schedule's proxy-split AP, read once
    by_seed = {seed: ({n: b.proxy_scores(seed, w, k) for n, (w, k) in proxies.items()},
                      b.val_ap(seed), b.proxy_scores(seed, "progressive", "AP"))
               for seed in b.seeds}
    rows, taus = [], {}
    for name, (where, key) in proxies.items():
        for on in ("scored by every proxy", "all trained in full"):
            if on == "all trained in full" and where == "proxy":
                continue
            on_split, on_val = [], []
            for scores, val, full in by_seed.values():
                common = set.intersection(*map(set, scores.values())) \
                    if on == "scored by every proxy" else set(scores[name])
                chains = sorted(c for c in common if c in val and c in full)
                groups = [[c for c in chains if c[-1] == end] for end in {c[-1] for c in chains}] \
                    if key == "neg_feature_loss" else [chains]
                for g in groups:
                    x = [scores[name][c] for c in g]
                    on_split.append((x, [full[c] for c in g]))
                    on_val.append((x, [val[c] for c in g]))
            tau_split, n = kendall_tau(on_split)
            tau_val, _ = kendall_tau(on_val)
            rows.append({"proxy": name, "chains": on, "pairs": n,
                         "tau: full schedule on the proxy split": tau_split,
                         "tau: val AP": tau_val})
            if on == "scored by every proxy":
                taus[name] = (tau_split, tau_val)
    best = max((k for k in taus if taus[k][1] == taus[k][1]), key=lambda k: taus[k][1],
               default=None)
    return pd.DataFrame(rows), {
        "proxy_tau_full_schedule_proxy_split": {k: v[0] for k, v in taus.items()},
        "proxy_tau_val": {k: v[1] for k, v in taus.items()},
        "proxy_agreeing_best_on_val": best}


def bgs_ranks(b: Bench) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Per seed: BGS's order and its val rank among all orders trained in full (restarted),
    and the orders BGS would have chosen with each proxy (replayed, target included, from the
    recorded proxy scores)."""
    rows, ranks = [], {}
    proxy = "full schedule" if b.bgs_where != "proxy" else f"{b.bgs['proxy_epochs']} ep"
    for seed, result in b.results.items():
        val = b.val_ap(seed)
        row: dict[str, Any] = {"seed": seed, "best of all orders (val)":
                               arrow(max(val, key=val.get))}
        orders = {f"BGS as run ({b.bgs['proxy']}, {proxy})": tuple(result["order"])}
        orders.update({f"replayed: {name}": b.bgs_order(seed, where, key)
                       for name, (where, key) in b.proxies().items()})
        for label, order in orders.items():
            rank = 1 + sum(a > val[order] for a in val.values()) if order in val else None
            row[label] = f"{arrow(order)} (rank {rank} of {len(val)})" if order else ""
            ranks.setdefault(label, []).append(rank)
        rows.append(row)
    summary = {f"{k}: mean rank": statistics.fmean(v) for k, v in ranks.items()
               if v and all(r is not None for r in v)}
    return pd.DataFrame(rows), summary


def plot_epochs(b: Bench, path: Path) -> None:
    """AP against total epochs: the student alone, direct distillation from each teacher (one
    stage = direct for a stage's epochs), the best restarted and continued chains."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6.4, 4.2))

    def line(label: str, points: list[tuple[int, BySeed]], style: str) -> None:
        xs, ms, sds = [], [], []
        for epochs, ap in points:
            m, sd, n = mean_sd(ap.values())
            if n:
                xs.append(epochs)
                ms.append(m)
                sds.append(sd if sd == sd else 0.0)
        if xs:
            ax.errorbar(xs, ms, yerr=sds, fmt=style, capsize=3, label=label)

    alone = sorted({int(e) for e in b.df[b.df["method"] == METHODS["baseline"]]["epochs"]})
    line("student alone", [(e, b.ap("baseline", "", e)) for e in alone], "s-k")
    for t in b.config["distill"]["direct"]:
        line(f"direct: {t}", [(b.stage, b.ap("progressive", t, b.stage)),
                              (b.budget, b.ap("direct", t, b.budget))], "^--")
    for schedule, style in (("progressive", "o-"), ("continued", "D-")):
        full = [c for c in b.chains(schedule) if len(c) * b.stage == b.budget]
        if not full:
            continue
        best = max(full, key=lambda c: mean_sd(b.ap(schedule, arrow(c)).values())[0])
        line(f"{METHODS[schedule]}: {arrow(best)}",
             [(b.stage * (i + 1), b.ap(schedule, arrow(best[: i + 1])))
              for i in range(len(best))], style)
    ax.set_xlabel("total epochs of the student")
    ax.set_ylabel("val box AP (mean +- sd over seeds)")
    ax.set_title(f"{b.config['experiment']}: AP against total epochs")
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3)
    _save_figure(fig, path)


def report(exp_dir: str | Path) -> dict[str, Any]:
    """Writes `report.md`, `report.json` and `epochs.png` into the experiment directory and
    returns the headline figures."""
    b = Bench(exp_dir)
    pre, s_pre = precondition(b)
    main, s_main = main_table(b)
    sched, s_sched = schedules(b)
    targets, s_targets = target_rules(b)
    proxy, s_proxy = proxy_validation(b)
    ranks, s_ranks = bgs_ranks(b)
    plot_epochs(b, b.dir / "epochs.png")
    warmup = warmup_share(b)
    summary = {"seeds": len(b.seeds), "stage_epochs": b.stage, "budget_epochs": b.budget,
               "warmup_share_of_a_stage": warmup, **s_pre, **s_main, **s_sched, **s_targets,
               **s_proxy, **s_ranks}
    atomic_write_json(b.dir / "report.json", summary)
    lines = [f"# Accuracy benchmark: {b.dir.name}", "",
             f"{len(b.seeds)} seeds (paired), stages of {b.stage} epochs (warm-up "
             f"{warmup:.1%} of a stage), every comparison at {b.budget} total epochs; "
             "differences are mean +- sd over seeds of the per-seed difference.", "",
             "## Precondition: direct distillation from each teacher", "",
             f"Holds: {s_pre['precondition_holds']} (the final teacher's direct run is "
             f"{pm(*s_pre['direct_final_minus_best_other'], signed=True)} AP against "
             f"{s_pre['best_other_direct_teacher']}'s; t is that difference over its standard "
             "error, below -2 to hold).", "", to_markdown(pre),
             f"## Every student at {b.budget} epochs", "", to_markdown(main),
             "## Continued LR schedule against the paper's restarts", "", to_markdown(sched),
             "## Target rules: the target each picks, BGS's order from it, that order in full",
             "", to_markdown(targets),
             "## BGS: its order's val rank among all orders, and the orders each proxy gives", "",
             to_markdown(ranks),
             "## The proxy: Kendall's tau against the chains trained in full (pairs of chains "
             "of one seed)", "",
             to_markdown(proxy), "## Summary", ""]
    lines += [f"- {k}: {_show(v)}" for k, v in summary.items()]
    atomic_write_text(b.dir / "report.md", "\n".join(lines) + "\n")
    return summary


def warmup_share(b: Bench) -> float:
    """Warm-up iterations over a stage's iterations, from the student's model config (NaN where
    the number of training images is not in the pipeline config: generated data only)."""
    from mtpd.model_config import load_config

    images = b.config["dataset"].get("shapes", {}).get("num_train")
    cfg = load_config(b.config["student"]["config"])
    batch = b.config["train"].get("batch_size") or cfg.train_dataloader["batch_size"]
    warm = [s["end"] for s in cfg.param_scheduler if not s.get("by_epoch", True)]
    if not images:
        return float("nan")
    return (warm[0] / (math.ceil(images / batch) * b.stage)) if warm else 0.0


def _show(v: Any) -> str:
    if isinstance(v, tuple) and len(v) == 2:
        return pm(*v, signed=True)
    if isinstance(v, float):
        return f"{v:.2f}"
    if isinstance(v, Mapping):
        return ", ".join(f"{k} {_show(x)}" for k, x in v.items())
    return str(v)


def collect(exp_dir: str | Path, out_dir: str | Path) -> int:
    """Copies every JSON record of an experiment and of its dataset's teachers (metrics, BGS
    state, the experiment's config; never a checkpoint) to `out_dir`, keeping the layout under
    the results root; returns how many. `report(out_dir/<experiment>)` then rebuilds the
    report from the copy."""
    exp_dir, out_dir = Path(exp_dir), Path(out_dir)
    layout, _ = experiment_layout(exp_dir)
    root = exp_dir.parent
    files = list(exp_dir.rglob("*.json")) + list(Path(layout.teacher_dir("x")).parent.rglob(
        "metrics_*.json"))
    files = [f for f in files if not any(p.endswith(".work") or p == "preflight"
                                         for p in f.relative_to(root).parts)]
    for f in files:
        target = out_dir / f.relative_to(root)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(f, target)
    return len(files)
