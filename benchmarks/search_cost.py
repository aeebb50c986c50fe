"""What a teacher-order search costs, in stage trainings: BGS with and without prefix reuse, and
exhaustive search, for n = 3..8 candidate teachers and K = 2..4 stages.

BGS's cost depends on when it stops; the table gives its worst case (every round prepends a
teacher until K stages), the most a search of that size can cost, and with the equal-budget
control (one more chain per round). The counts come from the functions the DAG's BGS steps use
to report the cost of a real search (`mtpd.bgs`; `results/<experiment>/seed<s>/bgs/result.json`
of the tiny run says 7 / 8 / 9 / 11, which tests/e2e/test_workflow.py counts on disk).
Writes benchmarks/results/search_cost.{md,csv,png}; prints the table.

    .venv/bin/python benchmarks/search_cost.py
"""
from __future__ import annotations

from pathlib import Path

import pandas as pd

from mtpd.bgs import bgs_chains, cost_of, exhaustive_chains, run_bgs
from mtpd.tables import to_markdown

OUT = Path(__file__).parent / "results"


def row(n: int, k: int) -> dict:
    pool = [f"t{i}" for i in range(n)]
    target = pool[-1]
    always = run_bgs(pool, target, lambda chain: float(len(chain)), margin=-1e9, max_stages=k)
    control = run_bgs(pool, target, lambda chain: float(len(chain)), margin=-1e9, max_stages=k,
                      control="repeat_first")
    bgs, ctrl = cost_of(bgs_chains(always)), cost_of(bgs_chains(control))
    ex = cost_of(exhaustive_chains(pool, k, target=target))
    ex_free = cost_of(exhaustive_chains(pool, k))
    return {"candidates": n, "max_stages": k,
            "bgs_with_reuse": bgs.stages_with_reuse,
            "bgs_without_reuse": bgs.stages_without_reuse,
            "bgs_control_with_reuse": ctrl.stages_with_reuse,
            "exhaustive_to_target_with_reuse": ex.stages_with_reuse,
            "exhaustive_to_target_without_reuse": ex.stages_without_reuse,
            "exhaustive_any_order_with_reuse": ex_free.stages_with_reuse}


def main() -> None:
    df = pd.DataFrame([row(n, k) for k in (2, 3, 4) for n in range(3, 9)])
    OUT.mkdir(exist_ok=True)
    df.to_csv(OUT / "search_cost.csv", index=False)
    (OUT / "search_cost.md").write_text(to_markdown(df))
    print(to_markdown(df))
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(13, 4), sharey=True)
    for ax, k in zip(axes, (2, 3, 4), strict=True):
        sub = df[df["max_stages"] == k]
        for col, label in (("bgs_with_reuse", "BGS (prefix reuse)"),
                           ("bgs_without_reuse", "BGS (no reuse)"),
                           ("exhaustive_to_target_with_reuse", "exhaustive, same target")):
            ax.plot(sub["candidates"], sub[col], marker="o", label=label)
        ax.set_yscale("log")
        ax.set_xticks(range(3, 9))
        ax.set_title(f"up to {k} stages")
        ax.set_xlabel("candidate teachers")
    axes[0].set_ylabel("stage trainings (log scale)")
    axes[0].legend(fontsize=8)
    fig.savefig(OUT / "search_cost.png", dpi=110, bbox_inches="tight")


if __name__ == "__main__":
    main()
