"""Result tables from the metrics JSONs that `mtpd evaluate` writes (CSV + Markdown)."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pandas as pd

from mtpd.io import atomic_write_text, atomic_write_with

MAIN_COLUMNS = ["model", "method", "teachers", "AP", "AP50", "AP75", "APs", "APm", "APl",
                "mask_AP", "epochs", "train_seconds", "split"]
METHOD_ORDER = {"teacher": 0, "baseline": 1, "direct": 2, "progressive": 3, "mtpd": 4}


def load_metrics(paths: list[str | Path]) -> pd.DataFrame:
    rows = []
    for p in paths:
        try:
            rec = json.loads(Path(p).read_text())
        except (OSError, json.JSONDecodeError) as e:
            raise ValueError(f"metrics file {p} cannot be read: {e}; re-run its evaluate rule"
                             ) from e
        rec["metrics_file"] = str(p)
        rows.append(rec)
    return pd.DataFrame(rows)


def main_table(df: pd.DataFrame) -> pd.DataFrame:
    """One row per model, teachers first, then the student by method and epochs."""
    df = df.copy()
    for col in MAIN_COLUMNS:
        if col not in df:
            df[col] = None
    df["_order"] = df["method"].map(METHOD_ORDER).fillna(9)
    df = df.sort_values(["_order", "epochs", "teachers", "model"], na_position="first")
    out = df[MAIN_COLUMNS].reset_index(drop=True)
    if out["mask_AP"].isna().all():
        out = out.drop(columns=["mask_AP"])
    if "train_seconds" in out:
        out["train_seconds"] = pd.to_numeric(out["train_seconds"]).round(1)
    return out


def to_markdown(df: pd.DataFrame) -> str:
    """A GitHub-flavoured Markdown table (no extra dependency such as tabulate)."""
    def cell(v: Any) -> str:
        if v is None or (isinstance(v, float) and pd.isna(v)):
            return ""
        if isinstance(v, float):
            return f"{v:.1f}" if abs(v) >= 100 else f"{v:.2f}"
        return str(v).replace("|", "\\|")

    lines = ["| " + " | ".join(df.columns) + " |", "|" + "---|" * len(df.columns)]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in df.itertuples(index=False)]
    return "\n".join(lines) + "\n"


def write_table(df: pd.DataFrame, out_dir: str | Path, name: str, title: str) -> None:
    out_dir = Path(out_dir)
    atomic_write_with(out_dir / f"{name}.csv", lambda p: df.to_csv(p, index=False))
    atomic_write_text(out_dir / f"{name}.md", f"# {title}\n\n{to_markdown(df)}")


def write_tables(metrics: list[str], out_dir: str | Path, extra: dict | None = None) -> None:
    write_table(main_table(load_metrics(metrics)), out_dir, "main",
                "mtpd results: teachers, student baseline and distilled students")
