"""BGS decision logic on planted proxy scores."""
from __future__ import annotations

import pytest

from mtpd.bgs import (
    bgs_chains,
    candidate_chains,
    cost_of,
    decide_round,
    exhaustive_chains,
    pick_target,
    run_bgs,
)

POOL = ["a", "b", "c", "t"]


def scorer(table):
    calls = []

    def score(chain):
        calls.append(chain)
        return table[chain]
    score.calls = calls
    return score


def test_prepends_best_until_no_improvement():
    table = {("t",): 10, ("a", "t"): 11, ("b", "t"): 13, ("c", "t"): 12,
             ("a", "b", "t"): 13.5, ("c", "b", "t"): 12.0, ("c", "a", "b", "t"): 13.0}
    d = run_bgs(POOL, "t", scorer(table), margin=0.2, max_stages=4)
    assert [x.chosen for x in d] == ["b", "a", None]
    assert d[-1].new_order == ("a", "b", "t")
    assert d[1].order_score == 13 and d[1].candidates == {"a": 13.5, "c": 12.0}
    assert "max_stages" not in d[-1].reason


def test_no_improvement_in_round_one_keeps_target_alone():
    table = {("t",): 10, ("a", "t"): 9, ("b", "t"): 10.05, ("c", "t"): 8}
    d = run_bgs(POOL, "t", scorer(table), margin=0.1, max_stages=3)
    assert len(d) == 1 and d[0].stop and d[0].new_order == ("t",)
    assert "b beats the current order by +0.050, not more than margin 0.1" in d[0].reason


def test_zero_gain_is_not_an_improvement():
    """With the default margin 0, a candidate must improve the proxy strictly: a tie with the
    current order (e.g. every score 0 on a tiny run) stops the search."""
    table = {("t",): 0.0, ("a", "t"): 0.0, ("b", "t"): 0.0, ("c", "t"): 0.0}
    d = run_bgs(POOL, "t", scorer(table), margin=0.0, max_stages=3)
    assert len(d) == 1 and d[0].stop and d[0].chosen is None
    assert "by +0.000, not more than margin 0.0" in d[0].reason
    table[("b", "t")] = 1e-6
    d = run_bgs(POOL, "t", scorer(table), margin=0.0, max_stages=2)
    assert d[0].chosen == "b"


def test_equal_budget_control_is_the_bar():
    """With control repeat_first, a round's bar is the current order with its first teacher
    repeated (as many stages as the candidates): a candidate that wins only by its extra epochs
    is not prepended, one that beats the control is."""
    table = {("t",): 1.0, ("a", "t"): 2.0, ("b", "t"): 1.5, ("t", "t"): 2.5}
    paper = run_bgs(["a", "b", "t"], "t", scorer(table), margin=0.0, max_stages=2)
    assert paper[0].chosen == "a" and paper[0].bar == 1.0 and paper[0].control_score is None
    s = scorer(table)
    ctrl = run_bgs(["a", "b", "t"], "t", s, margin=0.0, max_stages=2, control="repeat_first")
    assert ctrl[0].chosen is None and ctrl[0].bar == 2.5 and ctrl[0].control_score == 2.5
    assert "beats control t/t by -0.500" in ctrl[0].reason
    assert ("t", "t") in s.calls
    table[("a", "t")] = 3.0
    ctrl = run_bgs(["a", "b", "t"], "t", scorer(table), margin=0.0, max_stages=2,
                   control="repeat_first")
    assert ctrl[0].chosen == "a" and ctrl[-1].new_order == ("a", "t")
    assert ("t", "t") in bgs_chains(ctrl)  # the control is part of the search's cost
    with pytest.raises(ValueError, match="unknown BGS control"):
        run_bgs(["a", "t"], "t", scorer(table), margin=0.0, max_stages=2, control="other")


def test_ties_go_to_first_in_pool():
    table = {("t",): 1, ("a", "t"): 2, ("b", "t"): 2, ("c", "t"): 2}
    d = decide_round(1, POOL, ("t",), 1, table, margin=0, max_stages=2)
    assert d.chosen == "a"
    assert d.new_order == ("a", "t")


def test_pool_of_one_and_max_stages():
    d = run_bgs(["t"], "t", scorer({("t",): 5}), margin=0, max_stages=3)
    assert len(d) == 1 and d[0].stop and d[0].reason == "no unused candidate is left"
    table = {("t",): 1, ("a", "t"): 2, ("b", "t"): 3, ("c", "t"): 1}
    s = scorer(table)
    d = run_bgs(POOL, "t", s, margin=0, max_stages=2)
    assert d[-1].new_order == ("b", "t") and "max_stages=2" in d[-1].reason
    assert len(s.calls) == 4  # no chain of 3 was trained


def test_missing_scores_are_an_error():
    with pytest.raises(KeyError, match="lacks proxy scores"):
        decide_round(1, POOL, ("t",), 1, {("a", "t"): 1}, margin=0, max_stages=3)


def test_target_selection_and_candidates():
    assert pick_target({"a": 1, "b": 3, "t": 3}, ["a", "b", "t"]) == "b"
    assert candidate_chains(POOL, ("b", "t")) == [("a", "b", "t"), ("c", "b", "t")]


def test_cost_accounting_prefix_reuse():
    table = {("t",): 10, ("a", "t"): 11, ("b", "t"): 13, ("c", "t"): 12,
             ("a", "b", "t"): 13.5, ("c", "b", "t"): 12.0, ("c", "a", "b", "t"): 13.0}
    d = run_bgs(POOL, "t", scorer(table), margin=0.2, max_stages=4)
    chains = bgs_chains(d)
    assert len(chains) == 7
    c = cost_of(chains)
    # without reuse: 1 + 3*2 + 2*3 + 1*4 = 17 stage trainings. With reuse each distinct prefix
    # trains once: t; a, a/t; b, b/t; c, c/t; a/b, a/b/t; c/b, c/b/t; c/a, c/a/b, c/a/b/t = 14
    assert c.stages_without_reuse == 17
    assert c.stages_with_reuse == 14
    ex = exhaustive_chains(POOL, 3, target="t")
    assert len(ex) == 1 + 3 + 6 and all(ch[-1] == "t" for ch in ex)
    assert len(exhaustive_chains(POOL, 2)) == 4 + 12
