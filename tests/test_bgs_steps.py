"""The file-level BGS steps (mtpd/bgs_steps.py): proxy scores read from metrics files."""
from __future__ import annotations

from pathlib import Path

import pytest


def test_proxy_scores_from_metrics_files(tmp_path):
    """Scores come from metrics files whose path names the chain; the evaluation split is
    refused, whatever it is called."""
    import json

    from mtpd.bgs_steps import chain_scores
    from mtpd.errors import BGSError
    from mtpd.layout import Layout, metrics_path

    layout = Layout("exp", "data", root=str(tmp_path))
    files = []
    for chain, ap, fl in ((("t",), 3.0, 2.0), (("a", "t"), 4.0, 2.5)):
        p = tmp_path / metrics_path(layout.stage_model(0, "proxy", chain), "proxy")
        p.parent.mkdir(parents=True)
        p.write_text(json.dumps({"split": "proxy", "AP": ap, "feature_loss": fl,
                                 "neg_feature_loss": -fl}))
        files.append(str(p))
    assert chain_scores(files, "box_ap", "val") == {("t",): 3.0, ("a", "t"): 4.0}
    # lower feature loss is better: scores are its negation
    assert chain_scores(files, "feature_loss", "val") == {("t",): -2.0, ("a", "t"): -2.5}
    for split, evaluation in (("val", "val"), ("holdout", "holdout"), ("test", "holdout")):
        Path(files[0]).write_text(json.dumps({"split": split, "AP": 9.0}))
        with pytest.raises(BGSError, match=f"'{split}' is an evaluation split"):
            chain_scores(files, "box_ap", evaluation)
    with pytest.raises(BGSError, match="not the metrics file of a proxy chain"):
        chain_scores([str(tmp_path / metrics_path(layout.baseline_model(0, 3), "proxy"))],
                     "box_ap", "val")
