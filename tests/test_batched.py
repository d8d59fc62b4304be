"""regbench.batched: R stacked MLPs run layer by layer give what vmap of
functional_call gives (the path it replaces in a fused group), forward values,
gradients and BatchNorm's running statistics, in every layer order."""

from __future__ import annotations

import copy

import pytest
import torch
from omegaconf import OmegaConf
from torch import nn
from torch.func import functional_call, stack_module_state, vmap

from regbench import batched
from regbench.config import ModelConfig
from regbench.learner import MaskSampler, dropout_positions, replica_rates
from regbench.model import build_mlp

R, B, D, K = 4, 16, 7, 3


def _cfg(**kw):
    return OmegaConf.merge(OmegaConf.structured(ModelConfig), {"widths": [9, 6], **kw})


@pytest.mark.parametrize("order", [["linear", "bn", "act", "dropout"], ["linear", "act", "bn", "dropout"],
                                   ["linear", "act", "dropout", "bn"], ["linear", "dropout", "bn", "act"],
                                   ["act", "linear", "bn", "dropout"]])
@pytest.mark.parametrize("activation", ["relu", "tanh"])
@pytest.mark.parametrize("bn", [False, True])
def test_layerwise_equals_vmap(order, activation, bn):
    cfgs = [_cfg(order=order, activation=activation, batchnorm=bn, dropout=p, input_dropout=0.2) for p in (0.0, 0.1, 0.3, 0.5)]
    models = []
    for seed, c in enumerate(cfgs):
        torch.manual_seed(seed)
        models.append(build_mlp(c, D, K))
    template = build_mlp(_cfg(order=order, activation=activation, batchnorm=bn, dropout=0.5, input_dropout=0.2), D, K)
    assert batched.supported(template)
    params, buffers = stack_module_state(models)
    buffers = {k: v for k, v in buffers.items() if not k.endswith(".mask")}
    sampler = MaskSampler(dropout_positions(template, D), [replica_rates(c) for c in cfgs], list(range(R)), "cpu")
    masks = sampler.draw(B)
    x = torch.randn(R, B, D)
    y = torch.randint(0, K, (R, B))

    def run(layerwise: bool, training: bool, xs):
        p = {k: v.detach().clone().requires_grad_() for k, v in params.items()}
        bufs = {k: v.clone() for k, v in buffers.items()}
        template.train(training)
        if layerwise:
            out = batched.forward(template, p, bufs, masks, xs, training=training)
        else:
            call = lambda pp, bb, mm, xx: functional_call(template, (pp, bb, mm), (xx,), tie_weights=False)
            mk = {f"{k}.mask": v for k, v in masks.items()} if training else {}
            in_dims = (0, 0, 0, 0 if xs.dim() == 3 else None)
            out = vmap(call, in_dims=in_dims, randomness="error")(p, bufs, mk, xs)
        if training:
            nn.functional.cross_entropy(out.flatten(0, 1), y.flatten()).backward()
        return out.detach(), {k: v.grad for k, v in p.items()} if training else {}, bufs

    for training, xs in ((True, x), (False, x), (False, x[0])):
        before = xs.clone()
        a, ga, ba = run(False, training, xs)
        b, gb, bb = run(True, training, xs)
        assert torch.equal(xs, before)  # activations in place only on what the forward made, never on its input
        torch.testing.assert_close(b, a, rtol=1e-5, atol=1e-6)
        for k in ga:
            torch.testing.assert_close(gb[k], ga[k], rtol=1e-4, atol=1e-6)
        for k in ba:
            torch.testing.assert_close(bb[k], ba[k], rtol=1e-5, atol=1e-6)
        if bn and training:
            assert any(not torch.equal(ba[k], buffers[k]) for k in ba if k.endswith("running_mean"))


def test_only_regbenchs_layers_are_supported():
    model = build_mlp(_cfg(batchnorm=True), D, K)
    assert batched.supported(model)
    odd = copy.deepcopy(model)
    odd.hidden0.add_module("extra", nn.LayerNorm(9))
    assert not batched.supported(odd)
    cumulative = copy.deepcopy(model)
    cumulative.hidden0.bn.momentum = None  # a cumulative average needs the count on the host: vmap's path
    assert not batched.supported(cumulative)
