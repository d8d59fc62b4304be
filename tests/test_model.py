import pytest
import torch
from torch import nn

from regbench.model import build_mlp, layer_bn, layer_rates


def kinds(block: nn.Sequential) -> list[str]:
    return list(block._modules.keys())


@pytest.mark.parametrize(
    "order",
    [
        ["linear", "bn", "act", "dropout"],
        ["linear", "act", "bn", "dropout"],
        ["linear", "act", "dropout", "bn"],
        ["linear", "dropout", "act"],
    ],
)
def test_block_follows_order(make_cfg, order):
    cfg = make_cfg(f"model.order=[{','.join(order)}]", "model.batchnorm=true", "model.dropout=0.3")
    model = build_mlp(cfg.model, 8, 3)
    assert list(model._modules) == ["hidden0", "hidden1", "head"]
    for block in (model.hidden0, model.hidden1):
        assert kinds(block) == order
        assert isinstance(block.linear, nn.Linear)
        assert isinstance(block.act, nn.ReLU)
        assert block.dropout.p == 0.3
        if "bn" in order:
            assert isinstance(block.bn, nn.BatchNorm1d) and block.bn.num_features == 16


def test_bn_before_linear_normalizes_the_block_input(make_cfg):
    cfg = make_cfg("model.order=[bn,linear,act]", "model.batchnorm=true", "model.widths=[16,4]")
    model = build_mlp(cfg.model, 8, 3)
    assert model.hidden0.bn.num_features == 8
    assert model.hidden1.bn.num_features == 16


def test_off_parts_are_absent_not_identity(make_cfg):
    model = build_mlp(make_cfg().model, 8, 3)  # dropout 0, batchnorm false
    assert kinds(model.hidden0) == ["linear", "act"]
    assert not any(isinstance(m, (nn.Dropout, nn.BatchNorm1d)) for m in model.modules())


def test_per_layer_rates_and_switches(make_cfg):
    cfg = make_cfg(
        "model.widths=[16,16,16]",
        "model.dropout_layers=[0.1,0,0.5]",
        "model.bn_layers=[true,false,true]",
        "model.input_dropout=0.2",
        "model.bn_momentum=0.05",
        "model.bn_eps=1e-3",
    )
    assert layer_rates(cfg.model) == [0.1, 0.0, 0.5]
    assert layer_bn(cfg.model) == [True, False, True]
    model = build_mlp(cfg.model, 8, 3)
    assert model.input_dropout.p == 0.2
    assert kinds(model.hidden0) == ["linear", "bn", "act", "dropout"] and model.hidden0.dropout.p == 0.1
    assert kinds(model.hidden1) == ["linear", "act"]
    assert model.hidden2.dropout.p == 0.5
    assert model.hidden0.bn.momentum == 0.05 and model.hidden0.bn.eps == 1e-3


@pytest.mark.parametrize("act,cls", [("gelu", nn.GELU), ("tanh", nn.Tanh), ("sigmoid", nn.Sigmoid), ("leaky_relu", nn.LeakyReLU)])
def test_activations(make_cfg, act, cls):
    model = build_mlp(make_cfg(f"model.activation={act}").model, 8, 3)
    assert isinstance(model.hidden0.act, cls)


@pytest.mark.parametrize("init", ["kaiming", "xavier", "orthogonal"])
def test_init_schemes_zero_biases_and_differ_from_default(make_cfg, init):
    torch.manual_seed(0)
    default = build_mlp(make_cfg().model, 8, 3)
    torch.manual_seed(0)
    model = build_mlp(make_cfg(f"model.init={init}").model, 8, 3)
    assert torch.count_nonzero(model.hidden0.linear.bias) == 0
    assert not torch.equal(model.hidden0.linear.weight, default.hidden0.linear.weight)


def test_forward_shapes(make_cfg):
    model = build_mlp(make_cfg("model.batchnorm=true", "model.dropout=0.5").model, 8, 3)
    assert model(torch.randn(5, 8)).shape == (5, 3)
