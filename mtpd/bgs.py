"""Backward Greedy Selection (BGS): which teachers to use, and in what order.

Our reading of the paper's Algorithm 1 (documented in mtpd/README.md):

1. The last stage is the target teacher (given, or the teacher with the best proxy-split AP).
2. Work backwards. In each round, for every unused candidate c, the chain `[c] + order` is
   trained with a short proxy schedule and scored with a proxy (higher is better).
3. Prepend the best candidate if its score beats the bar by more than `margin`; otherwise
   stop. Also stop when the order has `max_stages` teachers or no candidate is left.

The bar is the current order's score (the paper's reading, `control="none"`), or, with
`control="repeat_first"`, the score of the current order with its first teacher repeated: a
chain as long as the candidates', so a teacher must earn its stage and not only win by the
extra epochs that any added stage brings.

This module is pure (no Snakemake, no torch): the DAG feeds it scores and writes its decisions
as JSON. Chains are tuples of teacher names, first stage first.
"""
from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field

from mtpd.layout import Chain, stage_prefixes

# Split names that always mean evaluation data, whatever the config calls its evaluation split.
EVALUATION_SPLITS = ("val", "test", "val2017", "test2017", "test-dev")


def proxy_split_problem(split: str, evaluation_split: str) -> str | None:
    """Why BGS may not score on `split`, or None. The one check that keeps BGS off the
    evaluation data: used when the config is validated and again on every metrics file BGS
    reads."""
    if split == evaluation_split or split in EVALUATION_SPLITS:
        return (f"'{split}' is an evaluation split; BGS must choose on a split carved from the "
                "training data (e.g. 'proxy')")
    return None


CONTROLS = ("none", "repeat_first")


@dataclass(frozen=True)
class RoundDecision:
    """The outcome of one BGS round."""

    round: int
    order: Chain                      # the order the round started from
    order_score: float
    candidates: dict[str, float]      # candidate -> proxy score of [candidate] + order
    chosen: str | None                # prepended candidate, or None when BGS stops
    new_order: Chain
    stop: bool
    reason: str
    bar: float | None = None          # what the best candidate had to beat (plus the margin)
    control_score: float | None = None  # score of the equal-budget control chain, if any

    def to_json(self) -> dict:
        d = asdict(self)
        d["order"], d["new_order"] = list(self.order), list(self.new_order)
        return d


def candidates_for(pool: Sequence[str], order: Sequence[str]) -> list[str]:
    """Unused teachers of the pool, in pool order."""
    return [t for t in pool if t not in order]


def candidate_chains(pool: Sequence[str], order: Sequence[str]) -> list[Chain]:
    return [(c, *order) for c in candidates_for(pool, order)]


def control_chain(order: Sequence[str], control: str) -> Chain | None:
    """The equal-budget control of a round: the order with its first teacher repeated."""
    if control not in CONTROLS:
        raise ValueError(f"unknown BGS control {control!r}; one of {CONTROLS}")
    return (order[0], *order) if control == "repeat_first" else None


def round_chains(pool: Sequence[str], order: Sequence[str], max_stages: int,
                 control: str) -> list[Chain]:
    """The chains a round must score: its candidates and, if any, its control."""
    if len(order) >= max_stages or not candidates_for(pool, order):
        return []
    ctrl = control_chain(order, control)
    return candidate_chains(pool, order) + ([ctrl] if ctrl else [])


def decide_round(round_index: int, pool: Sequence[str], order: Sequence[str],
                 order_score: float, scores: Mapping[Chain, float], margin: float,
                 max_stages: int, control: str = "none") -> RoundDecision:
    """One BGS round given proxy scores of its chains (`round_chains`).

    Ties between candidates go to the one listed first in the pool (deterministic).
    """
    order = tuple(order)
    cands = candidates_for(pool, order)
    if len(order) >= max_stages:
        return RoundDecision(round_index, order, order_score, {}, None, order, True,
                             f"the order already has max_stages={max_stages} teachers")
    if not cands:
        return RoundDecision(round_index, order, order_score, {}, None, order, True,
                             "no unused candidate is left")
    missing = [c for c in round_chains(pool, order, max_stages, control) if c not in scores]
    if missing:
        raise KeyError(f"BGS round {round_index} lacks proxy scores for chains {missing}")
    cand_scores = {c: float(scores[(c, *order)]) for c in cands}
    best = max(cands, key=lambda c: (cand_scores[c], -cands.index(c)))
    ctrl = control_chain(order, control)
    control_score = float(scores[ctrl]) if ctrl else None
    bar, against = ((control_score, f"control {'/'.join(ctrl)}") if ctrl
                    else (order_score, "the current order"))
    gain = cand_scores[best] - bar
    common = dict(bar=bar, control_score=control_score)
    if gain > margin:
        return RoundDecision(round_index, order, order_score, cand_scores, best,
                             (best, *order), False,
                             f"{best} beats {against} by {gain:+.3f} > margin {margin}", **common)
    return RoundDecision(round_index, order, order_score, cand_scores, None, order, True,
                         f"best candidate {best} beats {against} by {gain:+.3f}, not more "
                         f"than margin {margin}", **common)


def pick_target(proxy_ap: Mapping[str, float], pool: Sequence[str]) -> str:
    """The teacher with the best proxy-split AP (ties: first in pool order)."""
    return max(pool, key=lambda t: (proxy_ap[t], -list(pool).index(t)))


def run_bgs(pool: Sequence[str], target: str, score: Callable[[Chain], float], margin: float,
            max_stages: int, control: str = "none") -> list[RoundDecision]:
    """The whole search with a scoring callback (for tests and offline use, e.g. replaying the
    search with another control from recorded proxy scores).

    `score(chain)` returns the proxy score of a chain. The DAG runs the same rounds one
    Snakemake checkpoint at a time instead.
    """
    order: Chain = (target,)
    order_score = score(order)
    decisions = []
    for r in itertools.count(1):
        chains = round_chains(pool, order, max_stages, control)
        d = decide_round(r, pool, order, order_score, {c: score(c) for c in chains}, margin,
                         max_stages, control)
        decisions.append(d)
        if d.stop:
            return decisions
        order, order_score = d.new_order, d.candidates[d.chosen]


def exhaustive_chains(pool: Sequence[str], max_stages: int,
                      target: str | None = None) -> list[Chain]:
    """Every order of every subset of up to `max_stages` teachers (ending at `target` if given)."""
    chains = []
    for k in range(1, max_stages + 1):
        for perm in itertools.permutations(pool, k):
            if target is None or perm[-1] == target:
                chains.append(tuple(perm))
    return chains


@dataclass
class Cost:
    """Stage trainings needed for a set of chains, with and without reusing shared prefixes."""

    chains: int = 0
    stages_without_reuse: int = 0
    stages_with_reuse: int = 0
    unique_stages: set = field(default_factory=set)


def cost_of(chains: Iterable[Sequence[str]]) -> Cost:
    c = Cost()
    for chain in {tuple(ch) for ch in chains}:
        c.chains += 1
        c.stages_without_reuse += len(chain)
        c.unique_stages.update(stage_prefixes(chain))
    c.stages_with_reuse = len(c.unique_stages)
    return c


def bgs_chains(decisions: Sequence[RoundDecision]) -> list[Chain]:
    """Every chain a BGS run trained: the target alone, all candidate and control chains."""
    chains: list[Chain] = [decisions[0].order] if decisions else []
    for d in decisions:
        chains += [(c, *d.order) for c in d.candidates]
        if d.control_score is not None:
            chains.append((d.order[0], *d.order))
    return chains
