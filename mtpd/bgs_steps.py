"""The file-level steps of Backward Greedy Selection, one per Snakemake rule (`mtpd bgs ...`).

Each step reads metrics JSONs written by `mtpd evaluate` (their paths say which chain or teacher
they score, `mtpd.layout.describe`) and writes a small, readable JSON state file. The decisions
themselves are `mtpd.bgs`. No torch import here: these steps run as local rules.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from mtpd.bgs import (
    Chain,
    RoundDecision,
    bgs_chains,
    cost_of,
    decide_round,
    exhaustive_chains,
    pick_target,
    proxy_split_problem,
)
from mtpd.errors import BGSError
from mtpd.io import atomic_write_json, read_json_file
from mtpd.layout import describe

# proxy name -> metrics key (higher is better)
PROXIES = {"box_ap": "AP", "feature_loss": "neg_feature_loss"}


def read_json(path: str | Path) -> dict[str, Any]:
    """A record BGS reads (metrics, rounds), or a one-line BGSError naming the file."""
    return read_json_file(path, "BGS input", BGSError, "re-run the rule that writes it")


def _proxy_record(path: str, evaluation_split: str) -> dict[str, Any]:
    """A metrics record BGS may use: refused if it was computed on the evaluation split."""
    rec = read_json(path)
    problem = proxy_split_problem(rec.get("split", "?"), evaluation_split)
    if problem:
        raise BGSError(f"{path}: {problem}")
    return rec


def chain_scores(metrics: list[str], proxy: str, evaluation_split: str) -> dict[Chain, float]:
    """Proxy score of every chain whose proxy-schedule metrics are given."""
    key = PROXIES[proxy]
    scores = {}
    for path in metrics:
        chain = describe(path).chain
        if chain is None:
            raise BGSError(f"{path} is not the metrics file of a proxy chain")
        rec = _proxy_record(path, evaluation_split)
        if key not in rec:
            raise BGSError(f"{path} has no '{key}' for the '{proxy}' proxy; re-run its "
                           "training and evaluation")
        scores[chain] = float(rec[key])
    return scores


def write_target(pool: list[str], target: str, metrics: list[str], evaluation_split: str,
                 out: str) -> str:
    """Fixes the last stage: the configured teacher; with `best`, the teacher with the best AP
    of its own on the proxy split (the paper; `metrics` are the teachers'); with `proxy`, the
    teacher whose one-stage proxy chain gives the student the best proxy-split AP (ours:
    `metrics` are those chains'), i.e. the teacher a student learns from best."""
    if target == "proxy":
        ap = {describe(p).chain[0]: float(_proxy_record(p, evaluation_split)["AP"])
              for p in metrics if describe(p).chain and len(describe(p).chain) == 1}
        key, reason = "student_proxy_ap", "best proxy-split AP of a student after one stage"
    else:
        ap = {describe(p).teacher: float(_proxy_record(p, evaluation_split)["AP"])
              for p in metrics}
        key, reason = "teacher_proxy_ap", "best proxy-split AP"
    if target in ("best", "proxy"):
        missing = [t for t in pool if t not in ap]
        if missing:
            raise BGSError(f"no proxy-split metrics for teachers {missing} (bgs.target "
                           f"{target}); re-run their evaluation")
        chosen = pick_target(ap, pool)
    else:
        chosen, reason = target, "configured"
    atomic_write_json(out, {"target": chosen, "reason": reason, key: ap})
    return chosen


def write_round(round_index: int, pool: list[str], previous: str, metrics: list[str],
                proxy: str, margin: float, max_stages: int, evaluation_split: str,
                out: str, control: str = "none") -> RoundDecision:
    """One BGS round: `previous` is the target JSON (round 1) or the previous round's JSON."""
    prev = read_json(previous)
    scores = chain_scores(metrics, proxy, evaluation_split)
    if round_index == 1:
        order: Chain = (prev["target"],)
        if order not in scores:
            raise BGSError(f"round 1 needs the proxy score of the target chain {order}")
        order_score = scores[order]
    else:
        if prev.get("stop"):
            raise BGSError(f"{previous} already stopped BGS; there is no round {round_index}")
        order = tuple(prev["new_order"])
        order_score = prev["candidates"][prev["chosen"]]
    decision = decide_round(round_index, pool, order, order_score, scores, margin, max_stages,
                            control)
    atomic_write_json(out, {**decision.to_json(), "proxy": proxy, "margin": margin,
                            "max_stages": max_stages, "pool": pool, "control": control})
    return decision


def write_result(rounds: list[str], pool: list[str], max_stages: int, out: str,
                 exhaustive: str | None = None) -> dict[str, Any]:
    """The chosen order, the round log and the cost of the search."""
    decisions = [read_json(p) for p in rounds]
    last = decisions[-1]
    if not last.get("stop"):
        raise BGSError(f"{rounds[-1]} did not stop BGS; the search is not finished")
    fields = RoundDecision.__dataclass_fields__
    objs = [RoundDecision(**{**{k: v for k, v in d.items() if k in fields},
                             "order": tuple(d["order"]), "new_order": tuple(d["new_order"])})
            for d in decisions]
    cost = cost_of(bgs_chains(objs))
    ex = cost_of(exhaustive_chains(pool, max_stages, target=objs[0].order[-1]))
    result = {
        "order": list(last["new_order"]),
        "rounds": decisions,
        "cost": {"bgs_chains": cost.chains,
                 "bgs_stage_trainings_without_reuse": cost.stages_without_reuse,
                 "bgs_stage_trainings_with_reuse": cost.stages_with_reuse,
                 "exhaustive_chains": ex.chains,
                 "exhaustive_stage_trainings_without_reuse": ex.stages_without_reuse,
                 "exhaustive_stage_trainings_with_reuse": ex.stages_with_reuse},
    }
    if exhaustive:
        result["exhaustive"] = read_json(exhaustive)
    atomic_write_json(out, result)
    return result


def write_exhaustive(metrics: list[str], proxy: str, evaluation_split: str,
                     out: str) -> dict[str, Any]:
    """Every scored chain, best first (to check BGS against exhaustive search on one proxy)."""
    scores = chain_scores(metrics, proxy, evaluation_split)
    ranked = sorted(scores.items(), key=lambda kv: -kv[1])
    result = {"proxy": proxy, "best": list(ranked[0][0]),
              "scores": [{"chain": list(c), "score": s} for c, s in ranked]}
    atomic_write_json(out, result)
    return result
