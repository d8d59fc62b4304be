"""The MLP under study, built from real nn.Linear / nn.BatchNorm1d / nn.Dropout.

Each hidden block follows ``model.order``, so where BatchNorm and Dropout sit
is data, not code::

    [linear, bn, act, dropout]   BN before the activation (Ioffe & Szegedy 2015)
    [linear, act, bn, dropout]   BN after the activation
    [linear, act, dropout, bn]   dropout feeding BN: the variance shift of Li et al. 2019

A ``bn`` part is present only in the layers where BatchNorm is switched on, a
``dropout`` part only where that layer's rate is > 0.
"""

from __future__ import annotations

from collections import OrderedDict

from torch import nn

ACTIVATIONS = {
    "relu": nn.ReLU,
    "gelu": nn.GELU,
    "tanh": nn.Tanh,
    "sigmoid": nn.Sigmoid,
    "leaky_relu": nn.LeakyReLU,
    "elu": nn.ELU,
    "silu": nn.SiLU,
}


class Dropout(nn.Dropout):
    """``nn.Dropout(p)`` whose mask can come from outside.

    The learner draws each replica's mask from that job's own seeded stream
    (``regbench.learner.MaskSampler``) and hands it in as the ``mask`` buffer
    (already scaled by 1/(1-p), so the rate may differ per replica); under
    ``functional_call``/``vmap`` the mask is passed like any other buffer.
    Without a mask it is ``nn.Dropout``; in eval mode it is the identity.
    """

    def __init__(self, p: float):
        super().__init__(float(p))
        self.register_buffer("mask", None, persistent=False)

    def forward(self, x):
        if not self.training:
            return x
        if self.mask is None:
            return nn.functional.dropout(x, self.p, True)
        return x * self.mask


def layer_rates(cfg) -> list[float]:
    """Dropout p of each hidden layer: ``dropout_layers`` if set, else ``dropout`` everywhere."""
    if cfg.dropout_layers is not None:
        return [float(p) for p in cfg.dropout_layers]
    return [float(cfg.dropout)] * len(cfg.widths)


def layer_bn(cfg) -> list[bool]:
    """BatchNorm switch of each hidden layer: ``bn_layers`` if set, else ``batchnorm`` everywhere."""
    if cfg.bn_layers is not None:
        return [bool(b) for b in cfg.bn_layers]
    return [bool(cfg.batchnorm)] * len(cfg.widths)


def build_block(cfg, in_features: int, width: int, p: float, bn: bool) -> nn.Sequential:
    """One hidden block: the parts of ``cfg.order`` that apply to this layer."""
    parts: "OrderedDict[str, nn.Module]" = OrderedDict()
    features = in_features  # a part placed before `linear` sees the block's input
    for part in cfg.order:
        if part == "linear":
            parts["linear"] = nn.Linear(features, width)
            features = width
        elif part == "bn" and bn:
            parts["bn"] = nn.BatchNorm1d(features, eps=cfg.bn_eps, momentum=cfg.bn_momentum)
        elif part == "act":
            parts["act"] = ACTIVATIONS[cfg.activation]()
        elif part == "dropout" and p > 0:
            parts["dropout"] = Dropout(p)
    return nn.Sequential(parts)


def build_mlp(cfg, in_features: int, n_classes: int) -> nn.Sequential:
    """``cfg`` is a ModelConfig. Layers are named ``input_dropout``, ``hidden0``.. and ``head``."""
    layers: "OrderedDict[str, nn.Module]" = OrderedDict()
    if cfg.input_dropout > 0:
        layers["input_dropout"] = Dropout(cfg.input_dropout)
    features = in_features
    for i, (width, p, bn) in enumerate(zip(cfg.widths, layer_rates(cfg), layer_bn(cfg))):
        layers[f"hidden{i}"] = build_block(cfg, features, width, p, bn)
        features = width
    layers["head"] = nn.Linear(features, n_classes)
    model = nn.Sequential(layers)
    init_weights(model, cfg.init, cfg.activation)
    return model


def init_weights(model: nn.Module, scheme: str, activation: str) -> None:
    """``default`` keeps PyTorch's init; the others set Linear weights and zero the biases."""
    if scheme == "default":
        return
    nonlinearity = activation if activation in ("relu", "leaky_relu", "tanh", "sigmoid") else "relu"
    for module in model.modules():
        if isinstance(module, nn.Linear):
            if scheme == "kaiming":
                nn.init.kaiming_normal_(module.weight, nonlinearity=nonlinearity)
            elif scheme == "xavier":
                nn.init.xavier_uniform_(module.weight, gain=nn.init.calculate_gain(nonlinearity))
            elif scheme == "orthogonal":
                nn.init.orthogonal_(module.weight, gain=nn.init.calculate_gain(nonlinearity))
            nn.init.zeros_(module.bias)


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
