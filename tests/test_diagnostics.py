"""regbench.diagnostics: each measurement against its closed form or numpy, on tiny hand-made models."""

from __future__ import annotations

import copy
from collections import OrderedDict

import numpy as np
import pytest
import torch
from torch import nn
from torch.func import functional_call, stack_module_state

from regbench.config import ModelConfig
from regbench.diagnostics import Probe, percentiles, variance_shift
from regbench.model import build_mlp


def block(**parts: nn.Module) -> nn.Sequential:
    return nn.Sequential(OrderedDict(parts))


def identity_linear(k: int) -> nn.Linear:
    lin = nn.Linear(k, k)
    with torch.no_grad():
        lin.weight.copy_(torch.eye(k))
        lin.bias.zero_()
    return lin


@torch.inference_mode()
def probe_pass(model: nn.Module, x: torch.Tensor, chunk: int = 64, max_examples: int = 2048, call=None) -> dict:
    """What train.evaluate does: eval mode, the split in chunks, hooks attached around it."""
    model.eval()
    probe = Probe(model, max_examples)
    probe.attach()
    for start in range(0, len(x), chunk):
        (call or model)(x[start : start + chunk])
    probe.detach()
    return {k: v.item() for k, v in probe.results().items()}


def test_variance_shift_helper():
    assert variance_shift(torch.tensor([2.0, 1.0]), torch.tensor([1.0, 2.0])).item() == pytest.approx(2.0)
    assert variance_shift(torch.ones(3), torch.ones(3)).item() == 1.0
    # A unit constant at test time (dead ReLU into BN) stays finite thanks to BN's eps.
    assert variance_shift(torch.zeros(1), torch.zeros(1), eps=1e-5).item() == 1.0


@pytest.mark.parametrize("p", [0.0, 0.5, 0.2])
def test_variance_shift_matches_dropout_closed_form(p):
    """Dropout(p) before BN: in train mode the BN input (mean c, variance v) has
    variance (c^2 + v)/q - c^2, q = 1 - p, and running_var learns that; at test
    time dropout is off and the input variance is v."""
    torch.manual_seed(0)
    k, c, v = 32, 1.0, 1.0
    model = nn.Sequential(OrderedDict(
        hidden0=block(dropout=nn.Dropout(p), bn=nn.BatchNorm1d(k, momentum=None)),  # cumulative average
        head=nn.Linear(k, 2),
    ))
    model.train()
    with torch.no_grad():
        for _ in range(200):
            model(c + v ** 0.5 * torch.randn(256, k))
    x = c + v ** 0.5 * torch.randn(20_000, k)
    shift = probe_pass(model, x, chunk=4096)["bn_var_shift/hidden0"]
    q = 1 - p
    expected = ((c * c + v) / q - c * c) / v
    assert shift == pytest.approx(expected, rel=0.02)
    assert model.training is False  # the probe left the caller's mode alone


def test_variance_shift_is_over_the_whole_split_not_the_last_chunk():
    bn = nn.BatchNorm1d(1)
    bn.running_var.fill_(1.0)
    model = nn.Sequential(OrderedDict(hidden0=block(bn=bn), head=nn.Linear(1, 1)))
    # Two chunks, each constant, together of variance 1: mean 0, values -1 and +1.
    x = torch.cat([-torch.ones(50, 1), torch.ones(50, 1)])
    assert probe_pass(model, x, chunk=50)["bn_var_shift/hidden0"] == pytest.approx(1.0, abs=1e-4)


def test_percentiles_match_numpy_on_the_first_max_examples():
    torch.manual_seed(1)
    x = torch.randn(300, 3) * 2 + 0.5
    model = nn.Sequential(OrderedDict(hidden0=block(linear=identity_linear(3), act=nn.Tanh()), head=nn.Linear(3, 2)))
    got = probe_pass(model, x, chunk=64, max_examples=150)  # 150 spans three chunks
    want = np.percentile(x[:150, 0].numpy(), [15, 50, 85])  # numpy's default: linear interpolation
    assert [got[f"preact_p{q}/hidden0"] for q in (15, 50, 85)] == pytest.approx(want.tolist(), rel=1e-5)
    v = torch.tensor([3.0, 1.0, 4.0, 1.0, 5.0])
    assert percentiles(v).tolist() == pytest.approx(np.percentile(v.numpy(), [15, 50, 85]).tolist())


def test_percentiles_of_replica_rows_match_numpy_and_a_diverged_row_stays_nan():
    """Rows of several replicas (the CPU path sorts them with numpy): each row's
    percentiles as numpy's; a row of NaN (a diverged replica) gives NaN."""
    torch.manual_seed(3)
    v = torch.randn(4, 2048)
    v[1, :7] = float("inf")
    v[3] = float("nan")
    got = percentiles(v)
    assert got.shape == (4, 3) and got.dtype == torch.float32
    want = np.percentile(v[:3].double().numpy(), [15, 50, 85], axis=-1).T
    assert got[:3].double().numpy() == pytest.approx(want, rel=1e-6)
    assert torch.isnan(got[3]).all()


def test_dead_fraction_of_replicas_counts_silent_units_and_a_nan_unit_as_dead():
    """Fed directly with a replica dimension, as a vectorized evaluation does:
    a unit is alive if any example's output is > 0, however small (a subnormal
    counts); a unit whose outputs are NaN is not alive."""
    model = nn.Sequential(OrderedDict(hidden0=block(linear=identity_linear(4), act=nn.ReLU()), head=nn.Linear(4, 2)))
    probe = Probe(model)
    out = torch.zeros(2, 5, 4)  # (replicas, examples, units)
    out[0, 4, 0] = 1e-40  # a subnormal: alive
    out[0, :, 1] = 3.0
    out[1, :, 2] = float("nan")
    out[1, 0, 3] = 2.0
    probe.preact("hidden0", out, out)
    assert probe.results()["dead_frac/hidden0"].tolist() == [0.5, 0.75]


def test_dead_fraction_counts_units_silent_on_every_example():
    x = -torch.ones(100, 4)  # units 0, 1: always negative -> dead
    x[:, 2] = 1.0  # alive everywhere
    x[99, 3] = 0.5  # alive on one example only, in the last chunk
    model = nn.Sequential(OrderedDict(hidden0=block(linear=identity_linear(4), act=nn.ReLU()), head=nn.Linear(4, 2)))
    assert probe_pass(model, x, chunk=32)["dead_frac/hidden0"] == pytest.approx(0.5)


def test_weight_norms_match_torch_linalg():
    torch.manual_seed(2)
    model = build_mlp(ModelConfig(widths=[16, 8]), 5, 3)
    got = probe_pass(model, torch.randn(10, 5))
    for name, lin in (("hidden0", model.hidden0.linear), ("hidden1", model.hidden1.linear), ("head", model.head)):
        assert got[f"weight_norm/{name}"] == pytest.approx(torch.linalg.norm(lin.weight).item(), rel=1e-6)


def test_functional_call_with_a_replica_matches_the_plain_module():
    """Vectorized training calls one template with each replica's state: the
    probe must read that state inside its hooks, not the template's."""
    cfg = ModelConfig(widths=[16, 16], order=["linear", "act", "dropout", "bn"], dropout=0.3, batchnorm=True)
    torch.manual_seed(3)
    replicas = [build_mlp(cfg, 6, 3) for _ in range(2)]
    x = torch.randn(200, 6)
    for m in replicas:  # distinct running statistics per replica
        m.train()
        with torch.no_grad():
            for _ in range(50):
                m(x[torch.randperm(200)[:64]])
    params, buffers = stack_module_state(replicas)
    template = copy.deepcopy(replicas[0]).to("meta")
    for i, m in enumerate(replicas):
        state = {**{k: v[i] for k, v in params.items()}, **{k: v[i] for k, v in buffers.items()}}
        via_template = probe_pass(template, x, call=lambda xb: functional_call(template, state, (xb,)))
        plain = probe_pass(m, x)
        assert via_template.keys() == plain.keys()
        assert via_template == pytest.approx(plain, rel=1e-5, nan_ok=True)
        assert plain["bn_var_shift/hidden1"] > 1  # dropout feeds BN: the case the measure is for
    assert not template.hidden0.act._forward_hooks  # detach removed every hook


def test_columns_follow_the_model_structure():
    plain = Probe(build_mlp(ModelConfig(widths=[8, 8]), 4, 2)).columns()
    assert not [c for c in plain if c.startswith("bn_var_shift")]
    assert "dead_frac/hidden1" in plain and "weight_norm/head" in plain
    tanh = Probe(build_mlp(ModelConfig(widths=[8, 8], activation="tanh", bn_layers=[False, True]), 4, 2)).columns()
    assert not [c for c in tanh if c.startswith("dead_frac")]
    assert tanh == [
        "bn_var_shift/hidden1",
        "preact_p15/hidden0", "preact_p50/hidden0", "preact_p85/hidden0",
        "preact_p15/hidden1", "preact_p50/hidden1", "preact_p85/hidden1",
        "weight_norm/hidden0", "weight_norm/hidden1", "weight_norm/head",
    ]


def test_results_without_a_pass_are_nan_and_keys_match_columns():
    model = build_mlp(ModelConfig(widths=[8], batchnorm=True), 4, 2)
    probe = Probe(model)
    probe.attach()
    probe.detach()
    res = probe.results()
    assert list(res) == probe.columns()
    assert all(v.dim() == 0 and torch.isnan(v) for v in res.values())


def test_no_host_reads_during_the_pass_or_in_results(monkeypatch):
    """On CPU a stand-in for CUDA's sync check: nothing may pull a value to the host."""
    model = build_mlp(ModelConfig(widths=[8, 8], batchnorm=True, dropout=0.2), 4, 2).eval()
    probe = Probe(model, max_examples=50)

    def refuse(*a, **k):
        raise AssertionError("host read inside the probe")

    with torch.inference_mode():
        probe.attach()
        for name in ("item", "tolist", "__bool__", "__float__", "__int__"):
            monkeypatch.setattr(torch.Tensor, name, refuse)
        for start in range(0, 100, 32):
            model(torch.randn(100, 4)[start : start + 32])
        res = probe.results()
        monkeypatch.undo()
        probe.detach()
    assert len(res) == len(probe.columns())
