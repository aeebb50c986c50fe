"""Each distillation loss against a value computed by hand (numpy, loops) from its formula."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from mtpd.distill.losses import CWDLoss, FeatureMSELoss, FGDLoss, MGDLoss, PKDLoss, fgd_masks

RNG = np.random.default_rng(0)
S = RNG.normal(size=(2, 3, 4, 5))
T = RNG.normal(size=(2, 3, 4, 5)) * 2 + 0.5


def _t(a: np.ndarray) -> torch.Tensor:
    return torch.tensor(a, dtype=torch.float64)


def test_feature_mse():
    ref = 0.5 * sum((S[idx] - T[idx]) ** 2 for idx in np.ndindex(S.shape)) / S.size
    got = FeatureMSELoss(3, loss_weight=0.5).double()(_t(S), _t(T))
    assert float(got) == pytest.approx(ref, rel=1e-10)


def test_cwd():
    tau, w = 2.0, 0.7
    n, c = S.shape[:2]
    total = 0.0
    for i in range(n):
        for k in range(c):
            ps = np.exp(S[i, k].ravel() / tau) / np.exp(S[i, k].ravel() / tau).sum()
            pt = np.exp(T[i, k].ravel() / tau) / np.exp(T[i, k].ravel() / tau).sum()
            total += sum(pt[j] * math.log(pt[j] / ps[j]) for j in range(len(pt)))
    ref = w * total * tau ** 2 / (n * c)
    got = CWDLoss(3, tau=tau, loss_weight=w)(_t(S), _t(T))
    assert float(got) == pytest.approx(ref, rel=1e-9)


def test_pkd():
    def std(x):
        y = np.empty_like(x)
        for k in range(x.shape[1]):
            v = x[:, k]
            y[:, k] = (v - v.mean()) / (v.std(ddof=1) + 1e-6)
        return y
    ref = 2.0 * ((std(S) - std(T)) ** 2).mean() / 2
    got = PKDLoss(3, loss_weight=2.0)(_t(S), _t(T))
    assert float(got) == pytest.approx(ref, rel=1e-9)


def test_pkd_is_scale_free():
    loss = PKDLoss(3)
    assert float(loss(_t(S), _t(T))) == pytest.approx(float(loss(_t(S * 10 + 3), _t(T))), rel=1e-6)


def test_mgd_with_identity_generator():
    """With identity convolutions the generator is ReLU, so the loss is computable by hand."""
    loss = MGDLoss(3, loss_weight=0.01, mask_ratio=0.5).double()
    with torch.no_grad():
        for conv in (loss.generator[0], loss.generator[2]):
            conv.weight.zero_()
            conv.bias.zero_()
            for k in range(3):
                conv.weight[k, k, 1, 1] = 1.0
    mask = (RNG.random((2, 1, 4, 5)) > 0.5).astype(float)
    ref = 0.01 * (((np.maximum(S * mask, 0)) - T) ** 2).sum() / 2
    got = loss(_t(S), _t(T), mask=_t(mask))
    assert float(got) == pytest.approx(ref, rel=1e-9)
    # without an explicit mask, about mask_ratio of the locations are dropped
    m = loss.random_mask(torch.zeros(64, 3, 16, 16))
    assert 0.45 < 1 - float(m.mean()) < 0.55


def test_fgd_masks_by_hand():
    boxes = [torch.tensor([[0.0, 0.0, 16.0, 16.0], [8.0, 8.0, 32.0, 32.0]])]
    fg, bg = fgd_masks(boxes, [(32, 32)], 4, 4)
    # box 1 covers cells [0..2]x[0..2] (ceil(16/8)=2 inclusive): 1/9; box 2 covers [1..3]: 1/9
    expect = np.zeros((4, 4))
    expect[0:3, 0:3] = 1 / 9
    expect[1:4, 1:4] = 1 / 9
    assert np.allclose(fg[0].numpy(), expect)
    n_bg = (expect == 0).sum()
    assert np.allclose(bg[0].numpy(), (expect == 0) / n_bg)


def test_fgd_by_hand():
    alpha, beta, gamma, lam, temp = 0.3, 0.2, 0.1, 0.05, 0.5
    loss = FGDLoss(3, alpha=alpha, beta=beta, gamma=gamma, lam=lam, temp=temp).double()
    with torch.no_grad():  # global-context transforms output zero: GC(x) = x
        for block in (loss.context_s, loss.context_t):
            block.transform[-1].weight.zero_()
            block.transform[-1].bias.zero_()
    boxes = [torch.tensor([[0.0, 0.0, 10.0, 8.0]]), torch.tensor([[20.0, 12.0, 40.0, 32.0]])]
    img_shapes = [(32, 40), (32, 40)]
    got = loss(_t(S), _t(T), boxes=boxes, img_shapes=img_shapes)

    n, c, h, w = S.shape

    def attention(x):
        a = np.abs(x)
        sp = np.empty((n, h, w))
        ch = np.empty((n, c))
        for i in range(n):
            m = a[i].mean(0) / temp
            sp[i] = h * w * np.exp(m) / np.exp(m).sum()
            cm = a[i].mean((1, 2)) / temp
            ch[i] = c * np.exp(cm) / np.exp(cm).sum()
        return sp, ch

    sp_t, ch_t = attention(T)
    sp_s, ch_s = attention(S)
    fg, bg = (m.numpy() for m in fgd_masks(boxes, img_shapes, h, w))
    fg_l = bg_l = 0.0
    for i, k, y, x in np.ndindex(S.shape):
        d = (S[i, k, y, x] - T[i, k, y, x]) ** 2 * sp_t[i, y, x] * ch_t[i, k]
        fg_l += d * fg[i, y, x]
        bg_l += d * bg[i, y, x]
    att = (np.abs(ch_s - ch_t).sum() + np.abs(sp_s - sp_t).sum()) / n
    glo = ((S - T) ** 2).sum() / n
    ref = alpha * fg_l / n + beta * bg_l / n + gamma * att + lam * glo
    assert float(got) == pytest.approx(ref, rel=1e-9)


def test_fgd_requires_boxes():
    with pytest.raises(ValueError, match="ground-truth boxes"):
        FGDLoss(3)(_t(S), _t(T))
