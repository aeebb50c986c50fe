"""`mtpd bgs ...`: the file-level steps of Backward Greedy Selection, one per Snakemake rule.

Each step reads metrics JSONs written by `mtpd evaluate` (which record the chain they score)
and writes a small, readable JSON state file. The decisions themselves are `mtpd.bgs`.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from mtpd.bgs import (Chain, bgs_chains, cost_of, decide_round, exhaustive_chains,
                      pick_target, RoundDecision)
from mtpd.io import atomic_write_json

# proxy name -> metrics key (higher is better)
PROXIES = {"box_ap": "AP", "feature_loss": "neg_feature_loss"}


def _read(path: str | Path) -> dict[str, Any]:
    try:
        return json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise ValueError(f"BGS cannot read {path}: {e}; re-run the rule that writes it") from e


def chain_scores(metrics: list[str], proxy: str) -> dict[Chain, float]:
    """Proxy score of every chain, from metrics files that name their chain."""
    key = PROXIES[proxy]
    scores = {}
    for path in metrics:
        rec = _read(path)
        if "chain" not in rec:
            raise ValueError(f"{path} does not say which chain it scores (no 'chain' key)")
        if rec.get("split") in ("val", "test"):
            raise ValueError(f"{path} was evaluated on '{rec['split']}'; BGS must only see the "
                             "proxy split carved from the training data")
        if key not in rec:
            raise ValueError(f"{path} has no '{key}' for the '{proxy}' proxy; re-run its "
                             "training and evaluation")
        scores[tuple(rec["chain"])] = float(rec[key])
    return scores


def write_target(pool: list[str], target: str, teacher_metrics: list[str], proxy: str,
                 out: str) -> str:
    """Fixes the last stage: the configured teacher, or the one with the best proxy AP."""
    ap = {}
    for path in teacher_metrics:  # teachers are ranked by their box AP on the proxy split
        rec = _read(path)
        ap[rec["model"]] = float(rec["AP"])
    if target == "best":
        missing = [t for t in pool if t not in ap]
        if missing:
            raise ValueError(f"no proxy-split metrics for teachers {missing}")
        chosen = pick_target(ap, pool)
        reason = "best proxy-split AP"
    else:
        chosen, reason = target, "configured"
    atomic_write_json(out, {"target": chosen, "reason": reason, "teacher_proxy_ap": ap})
    return chosen


def write_round(round_index: int, pool: list[str], previous: str, metrics: list[str],
                proxy: str, margin: float, max_stages: int, out: str) -> RoundDecision:
    """One BGS round: `previous` is the target JSON (round 1) or the previous round's JSON."""
    prev = _read(previous)
    scores = chain_scores([m for m in metrics if Path(m) != Path(previous)], proxy)
    if round_index == 1:
        order: Chain = (prev["target"],)
        if order not in scores:
            raise ValueError(f"round 1 needs the proxy score of the target chain {order}")
        order_score = scores[order]
    else:
        if prev.get("stop"):
            raise ValueError(f"{previous} already stopped BGS; there is no round {round_index}")
        order = tuple(prev["new_order"])
        order_score = prev["candidates"][prev["chosen"]]
    decision = decide_round(round_index, pool, order, order_score, scores, margin, max_stages)
    atomic_write_json(out, {**decision.to_json(), "proxy": proxy, "margin": margin,
                            "max_stages": max_stages, "pool": pool})
    return decision


def write_result(rounds: list[str], pool: list[str], max_stages: int, out: str,
                 exhaustive: str | None = None) -> dict[str, Any]:
    """The chosen order, the round log and the cost of the search."""
    rounds = [p for p in rounds if p != exhaustive]
    decisions = [_read(p) for p in rounds]
    last = decisions[-1]
    if not last.get("stop"):
        raise ValueError(f"{rounds[-1]} did not stop BGS; the search is not finished")
    objs = [RoundDecision(**{**d, "order": tuple(d["order"]), "new_order": tuple(d["new_order"])})
            for d in ({k: v for k, v in d.items() if k in RoundDecision.__dataclass_fields__}
                      for d in decisions)]
    chains = bgs_chains(objs)
    cost = cost_of(chains)
    target = objs[0].order[-1]
    ex = cost_of(exhaustive_chains(pool, max_stages, target=target))
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
        result["exhaustive"] = _read(exhaustive)
    atomic_write_json(out, result)
    return result


def write_exhaustive(metrics: list[str], proxy: str, out: str) -> dict[str, Any]:
    scores = chain_scores(metrics, proxy)
    ranked = sorted(scores.items(), key=lambda kv: -kv[1])
    result = {"proxy": proxy, "best": list(ranked[0][0]),
              "scores": [{"chain": list(c), "score": s} for c, s in ranked]}
    atomic_write_json(out, result)
    return result
