"""The typed config schema, registered in Hydra's ConfigStore.

YAML files under conf/ only set values of these dataclasses, so an unknown key
(``model.dropuot=0.1``) or a wrong type (``model.dropout=abc``) fails when
Hydra composes the config, before anything runs. Range checks that a type
cannot express live in :func:`validate`, which the trainer calls first.

PyTorch conventions are kept: ``dropout`` is the probability of *dropping* a
unit (``nn.Dropout(p)``); ``bn_momentum`` is ``nn.BatchNorm1d``'s momentum
(weight of the new batch statistic in the running estimate).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, List, Optional

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING

from .sweep import register_resolver

register_resolver()  # job folder names; at import, so launcher workers have it too

PARTS = ("linear", "bn", "act", "dropout")
ACTIVATIONS = ("relu", "gelu", "tanh", "sigmoid", "leaky_relu", "elu", "silu")
INITS = ("default", "kaiming", "xavier", "orthogonal")
DATASETS = ("mnist1d", "digits", "blobs", "teacher", "mnist", "fashion_mnist", "kmnist", "cifar10")
STANDARDIZE = ("none", "global", "feature")
OPTIMIZERS = ("sgd", "adam", "adamw")
SCHEDULES = ("constant", "cosine", "step")


class ConfigError(ValueError):
    """A config value out of its allowed range: one line, names field, value and what is allowed."""


@dataclass
class ModelConfig:
    widths: List[int] = field(default_factory=lambda: [100, 100])  # hidden layer widths (units), each >= 1, at least one layer
    activation: str = "relu"  # one of relu, gelu, tanh, sigmoid, leaky_relu, elu, silu
    order: List[str] = field(default_factory=lambda: ["linear", "bn", "act", "dropout"])  # parts of each hidden block, in order: linear (once), bn, act, dropout (each at most once)
    dropout: float = 0.0  # probability of DROPPING a hidden unit (nn.Dropout p), [0, 1); 0 = no dropout layer
    dropout_layers: Optional[List[float]] = None  # per-hidden-layer dropout p, one per width; overrides `dropout` when set
    input_dropout: float = 0.0  # dropout p on the input features, [0, 1)
    batchnorm: bool = False  # put nn.BatchNorm1d at the `bn` position of every hidden block
    bn_layers: Optional[List[bool]] = None  # per-hidden-layer BatchNorm switch, one per width; overrides `batchnorm` when set
    bn_momentum: float = 0.1  # nn.BatchNorm1d momentum: weight of the batch statistic in the running one, (0, 1]
    bn_eps: float = 1e-5  # nn.BatchNorm1d eps added to the variance, > 0
    init: str = "default"  # weight init: default (PyTorch's), kaiming, xavier, orthogonal; biases 0 unless default


@dataclass
class DataConfig:
    name: str = MISSING  # mnist1d, digits, blobs, teacher, mnist, fashion_mnist, kmnist, cifar10
    root: str = "~/.cache/regbench"  # where datasets are cached / downloaded (mnist1d is generated into it)
    download: bool = True  # torchvision sets: download into `root` when missing (needs network)
    val_fraction: float = 0.2  # fraction of the training split held out for validation, (0, 1)
    test_fraction: float = 0.2  # sets without an official test split (digits, blobs, teacher): fraction held out, [0, 1)
    train_size: Optional[int] = None  # use only this many training examples (after the val split), >= 1; null = all
    label_noise: float = 0.0  # fraction of training labels resampled uniformly at random, [0, 1]; clean labels are kept
    standardize: str = "feature"  # none, global (one mean/std), feature (per input feature); stats from the training split only
    seed: int = 0  # seed of the split, subset and label noise; fixed so run seeds vary only init, masks and batch order
    # synthetic sets (blobs, teacher)
    n_samples: int = 5000  # examples generated, before splits
    n_features: int = 20  # input dimension
    n_classes: int = 5  # number of classes
    noise: float = 1.0  # blobs: cluster std around unit-variance centres; teacher: std of logit noise


@dataclass
class OptimConfig:
    name: str = MISSING  # sgd, adam, adamw
    lr: float = 1e-3  # peak learning rate, > 0
    momentum: float = 0.9  # sgd momentum, [0, 1)
    nesterov: bool = False  # sgd: Nesterov momentum (needs momentum > 0)
    betas: List[float] = field(default_factory=lambda: [0.9, 0.999])  # adam/adamw betas, each in [0, 1)
    weight_decay: float = 0.0  # L2 penalty (sgd, adam) or decoupled decay (adamw), >= 0
    schedule: str = "constant"  # lr schedule, stepped once per epoch: constant, cosine (CosineAnnealingLR over trainer.epochs), step
    step_size: int = 30  # step schedule: epochs between decays, >= 1
    gamma: float = 0.1  # step schedule: lr multiplier at each decay, (0, 1]


@dataclass
class TrainerConfig:
    epochs: int = 50  # passes over the training set, >= 1
    batch_size: int = 128  # examples per optimizer step, >= 1
    replicas: int = 1  # seeds trained at once as one vectorized model (seed, seed+1, ...), >= 1
    eval_batch_size: int = 8192  # examples per forward pass when evaluating, >= 1 (only memory, not results)
    grad_clip: float = 0.0  # clip the global gradient L2 norm to this, 0 = off
    diverge_loss: float = 1e4  # a training/fit loss above this (or NaN/inf) ends the run as `diverged`
    test: bool = True  # also evaluate the test split every epoch (when the dataset has one)
    diagnostics: bool = True  # record BN variance shift, pre-activation percentiles, dead ReLUs, weight and gradient norms
    checkpoint: bool = True  # save checkpoint.pt (model, optimizer, RNG, epoch) after every epoch
    progress: bool = True  # tqdm bar over epochs (shown only on a terminal)


@dataclass
class RegbenchConfig:
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    seed: int = 0  # run seed: initialization, dropout masks, batch order
    device: str = "auto"  # auto (cuda if present, else cpu), cpu, cuda, cuda:N, mps
    threads: int = 0  # CPU threads for torch in this process, 0 = torch's default


def register_configs() -> None:
    ConfigStore.instance().store(name="regbench_schema", node=RegbenchConfig)


def _fail(key: str, value: Any, allowed: str) -> None:
    raise ConfigError(f"{key}={value!r} is not allowed: {allowed}")


def _check_rate(key: str, p: float, closed: bool = False) -> None:
    ok = 0.0 <= p <= 1.0 if closed else 0.0 <= p < 1.0
    if not ok:
        _fail(key, p, "must be in [0, 1]" if closed else "must be in [0, 1) (probability of dropping a unit)")


def _one_of(key: str, value: str, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        _fail(key, value, "one of " + ", ".join(allowed))


def unknown_keys(cfg: Any, schema: type = None, prefix: str = "") -> list[str]:
    """Keys of a composed config that the schema does not define, each as
    ``key (allowed ...)``: Hydra accepts ``+model.dropuot=0.1`` as a new key."""
    import dataclasses

    from omegaconf import DictConfig

    fields = {f.name: f for f in dataclasses.fields(schema or RegbenchConfig)}
    out = []
    for key in cfg:
        if not prefix and key == "hydra":
            continue
        if key not in fields:
            out.append(f"{prefix}{key} (allowed{' in ' + prefix.rstrip('.') if prefix else ''}: {', '.join(fields)})")
            continue
        sub = fields[key].default_factory
        if isinstance(cfg[key], DictConfig) and dataclasses.is_dataclass(sub):
            out += unknown_keys(cfg[key], sub, f"{prefix}{key}.")
    return out


def validate(cfg: Any) -> None:
    """Range checks for a composed config; raises ConfigError at the first bad field."""
    unknown = unknown_keys(cfg)
    if unknown:
        raise ConfigError(f"unknown config key {unknown[0]}")
    m, d, o, t = cfg.model, cfg.data, cfg.optim, cfg.trainer

    widths = list(m.widths)
    if not widths:
        _fail("model.widths", widths, "at least one hidden layer width")
    for w in widths:
        if w < 1:
            _fail("model.widths", widths, "every width must be >= 1")
    order = list(m.order)
    for part in order:
        _one_of("model.order", part, PARTS)
    if order.count("linear") != 1 or len(set(order)) != len(order):
        _fail("model.order", order, "each of linear, bn, act, dropout at most once, linear exactly once")
    _one_of("model.activation", m.activation, ACTIVATIONS)
    _one_of("model.init", m.init, INITS)
    _check_rate("model.dropout", m.dropout)
    _check_rate("model.input_dropout", m.input_dropout)
    if m.dropout_layers is not None:
        if len(m.dropout_layers) != len(widths):
            _fail("model.dropout_layers", list(m.dropout_layers), f"one rate per hidden layer ({len(widths)} for model.widths={widths})")
        for p in m.dropout_layers:
            _check_rate("model.dropout_layers", p)
    if m.bn_layers is not None and len(m.bn_layers) != len(widths):
        _fail("model.bn_layers", list(m.bn_layers), f"one true/false per hidden layer ({len(widths)} for model.widths={widths})")
    rates = list(m.dropout_layers) if m.dropout_layers is not None else [m.dropout]
    if "dropout" not in order and any(p > 0 for p in rates):
        key, value = ("model.dropout_layers", rates) if m.dropout_layers is not None else ("model.dropout", m.dropout)
        _fail(key, value, f"needs a dropout part in model.order={order} (or a rate of 0)")
    bns = list(m.bn_layers) if m.bn_layers is not None else [m.batchnorm]
    if "bn" not in order and any(bns):
        key, value = ("model.bn_layers", bns) if m.bn_layers is not None else ("model.batchnorm", m.batchnorm)
        _fail(key, value, f"needs a bn part in model.order={order} (or false)")
    if not 0.0 < m.bn_momentum <= 1.0:
        _fail("model.bn_momentum", m.bn_momentum, "must be in (0, 1] (nn.BatchNorm1d convention)")
    if m.bn_eps <= 0:
        _fail("model.bn_eps", m.bn_eps, "must be > 0")

    _one_of("data.name", d.name, DATASETS)
    _one_of("data.standardize", d.standardize, STANDARDIZE)
    if not 0.0 < d.val_fraction < 1.0:
        _fail("data.val_fraction", d.val_fraction, "must be in (0, 1)")
    if not 0.0 <= d.test_fraction < 1.0:
        _fail("data.test_fraction", d.test_fraction, "must be in [0, 1)")
    _check_rate("data.label_noise", d.label_noise, closed=True)
    if d.train_size is not None and d.train_size < 1:
        _fail("data.train_size", d.train_size, "must be >= 1, or null for the whole training split")
    for key in ("n_samples", "n_features", "n_classes"):
        if getattr(d, key) < (2 if key == "n_classes" else 1):
            _fail(f"data.{key}", getattr(d, key), ">= 2" if key == "n_classes" else ">= 1")
    if d.noise < 0:
        _fail("data.noise", d.noise, "must be >= 0")

    _one_of("optim.name", o.name, OPTIMIZERS)
    if not o.lr > 0:
        _fail("optim.lr", o.lr, "must be > 0")
    if not 0.0 <= o.momentum < 1.0:
        _fail("optim.momentum", o.momentum, "must be in [0, 1)")
    if o.nesterov and o.momentum == 0:
        _fail("optim.nesterov", o.nesterov, "needs optim.momentum > 0")
    if len(o.betas) != 2 or not all(0.0 <= b < 1.0 for b in o.betas):
        _fail("optim.betas", list(o.betas), "two values, each in [0, 1)")
    if o.weight_decay < 0:
        _fail("optim.weight_decay", o.weight_decay, "must be >= 0")
    _one_of("optim.schedule", o.schedule, SCHEDULES)
    if o.step_size < 1:
        _fail("optim.step_size", o.step_size, "must be >= 1")
    if not 0.0 < o.gamma <= 1.0:
        _fail("optim.gamma", o.gamma, "must be in (0, 1]")

    for key in ("epochs", "batch_size", "eval_batch_size", "replicas"):
        if getattr(t, key) < 1:
            _fail(f"trainer.{key}", getattr(t, key), "must be >= 1")
    if "bn" in order and any(m.bn_layers if m.bn_layers is not None else [m.batchnorm]):
        if t.batch_size < 2:  # BatchNorm cannot normalize a batch of one
            _fail("trainer.batch_size", t.batch_size, "must be >= 2 with BatchNorm")
        if d.train_size is not None and d.train_size < 2:
            _fail("data.train_size", d.train_size, "must be >= 2 with BatchNorm")
    if t.grad_clip < 0:
        _fail("trainer.grad_clip", t.grad_clip, "must be >= 0 (0 = off)")
    if not t.diverge_loss > 0:
        _fail("trainer.diverge_loss", t.diverge_loss, "must be > 0")

    if not re.fullmatch(r"auto|cpu|mps|cuda(:\d+)?", cfg.device):
        _fail("device", cfg.device, "one of auto, cpu, cuda, cuda:N, mps")
    if cfg.threads < 0:
        _fail("threads", cfg.threads, "must be >= 0 (0 = torch's default)")
