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

import math
import re
from dataclasses import dataclass, field
from typing import Any, List, Optional

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING

from . import userdata
from .sweep import register_resolver
from .userdata import USER_DATASETS

register_resolver()  # job folder names; at import, so launcher workers have it too

PARTS = ("linear", "bn", "act", "dropout")
ACTIVATIONS = ("relu", "gelu", "tanh", "sigmoid", "leaky_relu", "elu", "silu")
INITS = ("default", "kaiming", "xavier", "orthogonal")
DATASETS = ("mnist1d", "digits", "blobs", "teacher", "mnist", "fashion_mnist", "kmnist", "cifar10", "file", "callable")
STANDARDIZE = ("none", "global", "feature")
OPTIMIZERS = ("sgd", "adam", "adamw")
SCHEDULES = ("constant", "cosine", "step")

# Upper bounds: beyond them a value is a typo, not an experiment (memory is
# estimated separately, by regbench.preflight, against what the machine has).
MAX_SEED = 2**63 - 1  # seeds are torch generator seeds, stored as signed 64-bit integers
MAX_EPOCHS = 1_000_000
MAX_WIDTH = 1_000_000  # units per hidden layer
MAX_LAYERS = 1_000  # hidden layers
MAX_REPLICAS = 10_000
MAX_BATCH = 100_000_000  # examples per step or evaluation pass
MAX_SAMPLES = 100_000_000  # synthetic examples (blobs, teacher)
MAX_FEATURES = 1_000_000  # synthetic input dimension
MAX_CLASSES = 100_000
MAX_THREADS = 1_024

# What each dataset is, known without loading it: (input features, classes,
# examples in the official training split, in the official test split; None =
# no official test split, data.test_fraction of the whole is held out).
# blobs and teacher take theirs from data.n_features / n_classes / n_samples.
MNIST1D_SEED = 42  # mnist1d's own default generator seed: the canonical dataset
DATASET_SHAPES = {
    "mnist1d": (40, 10, 4000, 1000),
    "digits": (64, 10, 1797, None),
    "mnist": (784, 10, 60000, 10000),
    "fashion_mnist": (784, 10, 60000, 10000),
    "kmnist": (784, 10, 60000, 10000),
    "cifar10": (3072, 10, 50000, 10000),
}
MNIST_FILES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")
CIFAR_FILES = tuple(f"data_batch_{i}" for i in range(1, 6)) + ("test_batch",)
# Where each set lives under data.root and the files that must be there for it
# to be read without writing anything; sets made in code (digits, blobs,
# teacher) touch no files.
DATASET_FILES = {
    "mnist1d": ("mnist1d", (f"mnist1d_seed{MNIST1D_SEED}.npz",)),
    "mnist": ("MNIST/raw", MNIST_FILES),
    "fashion_mnist": ("FashionMNIST/raw", MNIST_FILES),
    "kmnist": ("KMNIST/raw", MNIST_FILES),
    "cifar10": ("cifar-10-batches-py", CIFAR_FILES),
}


# Where torchvision fetches each set from (its classes' mirrors and url;
# tests/test_data.py checks them against torchvision): before a run whose set
# is missing from data.root starts, preflight asks whether one can be reached.
DOWNLOAD_URLS = {
    "mnist": ("https://ossci-datasets.s3.amazonaws.com/mnist/", "http://yann.lecun.com/exdb/mnist/"),
    "fashion_mnist": ("http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",),
    "kmnist": ("http://codh.rois.ac.jp/kmnist/dataset/kmnist/",),
    "cifar10": ("https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz",),
}


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
    name: str = MISSING  # mnist1d, digits, blobs, teacher, mnist, fashion_mnist, kmnist, cifar10; file, callable (your own)
    root: str = "~/.cache/regbench"  # where datasets are cached / downloaded (mnist1d is generated into it)
    download: bool = True  # torchvision sets: download into `root` when missing (needs network)
    val_fraction: float = 0.2  # fraction of the training split held out for validation, (0, 1)
    test_fraction: float = 0.2  # sets without an official test split (digits, blobs, teacher): fraction held out, [0, 1)
    train_size: Optional[int] = None  # use only this many training examples (after the val split), >= 1; null = all
    label_noise: float = 0.0  # fraction of training labels resampled uniformly at random, [0, 1]; clean labels are kept
    standardize: str = "feature"  # none, global (one mean/std), feature (per input feature); stats from the training split only
    seed: int = 0  # seed of the split, subset and label noise; fixed so run seeds vary only init, masks and batch order
    # your own data (regbench/userdata.py)
    path: Optional[str] = None  # data=file: a .npz (x, y[, x_test, y_test]), .csv or .parquet (needs pyarrow) file
    target: Optional[str] = None  # data=file with a table: the column that holds the integer labels 0..C-1
    loader: Optional[str] = None  # data=callable: module:function returning (x, y), (x, y, x_test, y_test) or a dict
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
    eval_batch_size: int = 8192  # examples per forward pass when evaluating, >= 1 (memory; losses may differ by float rounding, ~1e-6, as sums split differently)
    grad_clip: float = 0.0  # clip the global gradient L2 norm to this, 0 = off
    diverge_loss: float = 1e4  # a training/fit loss above this (or NaN/inf) ends the run as `diverged`; inf: only NaN/inf do
    test: bool = True  # also evaluate the test split every epoch (when the dataset has one)
    diagnostics: bool = True  # record BN variance shift, pre-activation percentiles, dead ReLUs, weight and gradient norms
    checkpoint: bool = True  # save checkpoint.pt (model, optimizer, RNG, epoch) as it trains, and at the end
    # seconds between two saves of checkpoint.pt and summary.json (after the epoch that
    # ends the wait; always after the last); 0 = after every epoch. A kill loses at most
    # this much training: the rows after the checkpoint are trained again, to the same numbers
    save_every_s: float = 5.0
    progress: bool = True  # tqdm bar over epochs (shown only on a terminal)


@dataclass
class TensorboardLoggerConfig:
    save_dir: Optional[str] = None  # null = <job>/tensorboard/seed=<s>; else <save_dir>/<job folder name>/seed=<s>


@dataclass
class MlflowLoggerConfig:
    tracking_uri: Optional[str] = None  # null = file store outputs/mlruns under the current folder; any MLflow tracking URI
    experiment_name: Optional[str] = None  # null = the sweep folder's name (a single run: regbench)


@dataclass
class LoggerConfig:
    """Trackers that mirror the records live (regbench/trackers.py); null = off.
    Set by the `logger` group: logger=tensorboard, logger=mlflow, logger=[tensorboard,mlflow]."""

    tensorboard: Optional[TensorboardLoggerConfig] = None
    mlflow: Optional[MlflowLoggerConfig] = None


@dataclass
class ReportConfig:
    """`regbench report` of the run or sweep, written when it ends (runtime: not part of what a run computes)."""

    at_end: bool = False  # write <sweep or run folder>/report as `regbench report <folder>` would, when the jobs end
    options: List[str] = field(default_factory=list)  # more `regbench report` options: report.options=[--metric,val_loss,--formats,png]


@dataclass
class RegbenchConfig:
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    seed: int = 0  # run seed: initialization, dropout masks, batch order
    device: str = "auto"  # auto (cuda if present, else cpu), cpu, cuda, cuda:N, mps
    threads: int = 0  # CPU threads for torch in this process; 0 = auto: one for a small model (under 8M multiply-adds a step), else torch's default
    logger: LoggerConfig = field(default_factory=LoggerConfig)  # experiment trackers (runtime: not part of what a run computes)
    report: ReportConfig = field(default_factory=ReportConfig)


def schema_fields(obj: Any = None, prefix: str = ""):
    """(dotted key, dataclass field, default) of every leaf of the schema."""
    import dataclasses

    obj = RegbenchConfig() if obj is None else obj
    for f in dataclasses.fields(obj):
        value = getattr(obj, f.name)
        if dataclasses.is_dataclass(value):
            yield from schema_fields(value, f"{prefix}{f.name}.")
        else:
            yield f"{prefix}{f.name}", f, value


def flat_defaults() -> dict[str, Any]:
    """The schema's own default of every config key, as flat dotted keys
    (``data.noise``: 1.0): what a key that an older regbench did not have yet
    meant in its runs. Keys without a default (MISSING) are left out."""
    return {key: list(value) if isinstance(value, (list, tuple)) else value
            for key, _, value in schema_fields() if value is not MISSING and value != "???"}


def register_configs() -> None:
    ConfigStore.instance().store(name="regbench_schema", node=RegbenchConfig)
    register_fused_launcher()
    register_optuna_sweeper()


def register_fused_launcher() -> None:
    """Make sure Hydra knows regbench's fused launcher (conf/config.yaml's
    default for multirun). Hydra finds plugins by listing the
    ``hydra_plugins`` namespace package, which cannot list a package that an
    editable install maps in through an import hook; a wheel install needs
    none of this. Importing the module registers its config node."""
    try:
        from hydra_plugins.regbench_fused_launcher import fused_launcher
    except ImportError:  # pragma: no cover - not installed with this package
        return
    from hydra.core.plugins import Plugins
    from hydra.plugins.launcher import Launcher

    plugins = Plugins.instance()
    name = f"{fused_launcher.FusedLauncher.__module__}.{fused_launcher.FusedLauncher.__name__}"
    if name not in plugins.class_name_to_class:
        plugins.class_name_to_class[name] = fused_launcher.FusedLauncher
        plugins.plugin_type_to_subclass_list.setdefault(Launcher, []).append(fused_launcher.FusedLauncher)


def register_optuna_sweeper() -> None:
    """The same for regbench's Optuna sweeper (hydra_plugins/regbench_optuna_sweeper),
    which ``hydra.sweeper._target_`` names on top of ``hydra/sweeper=optuna``."""
    try:
        from hydra_plugins.regbench_optuna_sweeper import optuna_sweeper
    except ImportError:  # pragma: no cover - not installed with this package
        return
    from hydra.core.plugins import Plugins
    from hydra.plugins.sweeper import Sweeper

    plugins = Plugins.instance()
    if optuna_sweeper.TARGET not in plugins.class_name_to_class:
        plugins.class_name_to_class[optuna_sweeper.TARGET] = optuna_sweeper.RegbenchOptunaSweeper
        plugins.plugin_type_to_subclass_list.setdefault(Sweeper, []).append(optuna_sweeper.RegbenchOptunaSweeper)


# Where +inf means something: only NaN/inf losses diverge; save only after the last epoch.
INFINITE_ALLOWED = ("trainer.diverge_loss", "trainer.save_every_s")


def _floats(node: Any, prefix: str):
    """(dotted key, value) of every float in a config node, lists included."""
    items = node.items() if hasattr(node, "items") else enumerate(node)
    for k, v in items:
        key = f"{prefix}.{k}" if not isinstance(k, int) else f"{prefix}[{k}]"
        if isinstance(v, float):
            yield key, v
        elif hasattr(v, "items") or isinstance(v, (list, tuple)) or type(v).__name__ == "ListConfig":
            yield from _floats(v, key)


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


def report_refusal(cfg: Any) -> Optional[str]:
    """Why report.at_end=true's report.options would not parse (``regbench
    report``'s own parser, without the report's imports), or None."""
    report = cfg.get("report")
    if report is None or not report.at_end:
        return None
    from .provenance import launch_dir
    from .report.options import refusal

    options = [str(o) for o in report.options]
    why = refusal(options, root=launch_dir())
    return f"report.options=[{','.join(options)}]: {why}" if why else None


def _check_int(key: str, value: int, low: int, high: int, why: str = "") -> None:
    if not low <= value <= high:
        _fail(key, value, f"must be in [{low}, {high}]{why}")


def dataset_shape(d: Any) -> tuple[int, int, int, Optional[int]]:
    """(input features, classes, examples of the training split, of the official
    test split or None) of ``data``, known without loading it (DATASET_SHAPES)."""
    if d.name in DATASET_SHAPES:
        return DATASET_SHAPES[d.name]
    if d.name in USER_DATASETS:  # read from the file; None for a callable, known only once called
        try:
            return userdata.shape(d)
        except userdata.UserDataError as exc:
            raise ConfigError(str(exc)) from None
    return int(d.n_features), int(d.n_classes), int(d.n_samples), None


def split_sizes(d: Any, n: int, has_test: bool) -> tuple[int, int, int]:
    """(train, val, test) examples that ``data`` leaves of ``n`` examples: the
    official training split when the set has a test split (``has_test``), else
    the whole set, of which ``test_fraction`` is held out first. Raises
    ConfigError naming the fraction that leaves a split empty. build_dataset
    splits with these sizes; :func:`validate` checks them from DATASET_SHAPES."""
    whole, n_test = n, 0
    if not has_test and d.test_fraction > 0:
        n_test = round(d.test_fraction * n)
        if n_test == 0:
            raise ConfigError(
                f"data.test_fraction={d.test_fraction} is not allowed here: it leaves 0 test examples of the "
                f"{n} {d.name} examples (use 0 for no test split)"
            )
        n -= n_test
    n_val = round(d.val_fraction * n)
    n_train = n - n_val
    if n_val == 0 or n_train <= 0:
        # the test split took most of the set, and val_fraction alone would split it: too little is left
        if n_test > n and 0 < round(d.val_fraction * whole) < whole:
            raise ConfigError(
                f"data.test_fraction={d.test_fraction} is not allowed here: it holds out {n_test} of the {whole} "
                f"{d.name} examples for testing and leaves {n}, too few to split by data.val_fraction="
                f"{d.val_fraction} ({n_val} validation, {n_train} training); use a smaller data.test_fraction"
            )
        raise ConfigError(
            f"data.val_fraction={d.val_fraction} is not allowed here: it leaves {n_val} validation and "
            f"{n_train} training examples of the {n} {d.name} examples to split"
        )
    if d.train_size is not None:
        if d.train_size > n_train:
            raise ConfigError(
                f"data.train_size={d.train_size} is not allowed: must be <= {n_train}, "
                f"the training examples of {d.name} after the validation split"
            )
        n_train = d.train_size
    return n_train, n_val, n_test


def memory_estimate(cfg: Any) -> Optional[dict[str, int]]:
    """Rough peak bytes one job of ``cfg`` holds (float32 everywhere), by part:

    - ``params``: parameters x replicas x (weights + gradients + optimizer
      state: 1 buffer for sgd with momentum, 2 for adam/adamw), plus the
      template module of a vectorized model;
    - ``activations``: a training step's activations for ``trainer.batch_size``
      examples per replica (each part of each hidden block, kept for the
      backward pass), the replicas' batch orders, and one evaluation pass of
      ``trainer.eval_batch_size`` examples;
    - ``data``: the whole dataset, about three float copies while it is split
      and standardized.

    Pure arithmetic (no torch): regbench.preflight compares the total with the
    memory the device has free. None when the data's size is not known yet
    (``data=callable``).
    """
    m, d, t = cfg.model, cfg.data, cfg.trainer
    if dataset_shape(d) is None:  # data=callable: its size is known once it has been called
        return None
    n_features, n_classes, n, n_test = dataset_shape(d)
    n_total = n + (n_test or 0)
    n_train, n_val, n_held = split_sizes(d, n, n_test is not None)
    n_test = n_test if n_test is not None else n_held
    widths = [int(w) for w in m.widths]
    bns = list(m.bn_layers) if m.bn_layers is not None else [m.batchnorm] * len(widths)
    bns = [bool(b) and "bn" in m.order for b in bns]
    dims = [n_features] + widths + [n_classes]
    n_params = sum(a * b + b for a, b in zip(dims, dims[1:])) + sum(2 * w for w, bn in zip(widths, bns) if bn)
    R = int(t.replicas)
    state = 2 if cfg.optim.name in ("adam", "adamw") else (1 if cfg.optim.momentum > 0 else 0)
    copies = R * (2 + state) + (1 if R > 1 else 0)
    params = 4 * n_params * copies
    b = min(int(t.batch_size), n_train)
    per_example = n_features + sum((len(m.order) + 1) * w for w in widths) + 2 * max(widths) + 4 * n_classes
    train = 4 * R * b * per_example + 2 * 8 * R * n_train  # activations + batch orders (int64)
    e = min(int(t.eval_batch_size), max(n_train, n_val, n_test))
    evaluate = 4 * e * (n_features + 2 * max(widths) + 2 * n_classes)
    data = 3 * 4 * n_total * n_features
    return {
        "params": params,
        "activations": train + evaluate,
        "data": data,
        "total": params + train + evaluate + data,
        "n_params": n_params,
        "copies": copies,
        "train_batch": 4 * R * b * per_example,
        "eval_batch": evaluate,
    }


def validate(cfg: Any) -> None:
    """Range checks for a composed config; raises ConfigError at the first bad field."""
    unknown = unknown_keys(cfg)
    if unknown:
        raise ConfigError(f"unknown config key {unknown[0]}")
    m, d, o, t = cfg.model, cfg.data, cfg.optim, cfg.trainer
    for group in ("model", "data", "optim", "trainer"):  # NaN passes `x < 0`-style range checks: refuse it first
        for key, value in _floats(cfg[group], group):
            if not math.isfinite(value) and not (key in INFINITE_ALLOWED and value == math.inf):
                _fail(key, value, "must be a finite number")

    widths = list(m.widths)
    if not widths:
        _fail("model.widths", widths, "at least one hidden layer width")
    if len(widths) > MAX_LAYERS:
        _fail("model.widths", f"[{len(widths)} widths]", f"at most {MAX_LAYERS} hidden layers")
    for w in widths:
        if w < 1:
            _fail("model.widths", widths, "every width must be >= 1")
        if w > MAX_WIDTH:
            _fail("model.widths", widths, f"every width must be <= {MAX_WIDTH}")
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
    if not str(d.root).strip():  # Path("") is the current folder: a set would be cached wherever the command was typed
        _fail("data.root", d.root, "must be a folder path (default ~/.cache/regbench; data.root=. for the current folder)")
    if not 0.0 < d.val_fraction < 1.0:
        _fail("data.val_fraction", d.val_fraction, "must be in (0, 1)")
    if not 0.0 <= d.test_fraction < 1.0:
        _fail("data.test_fraction", d.test_fraction, "must be in [0, 1)")
    _check_rate("data.label_noise", d.label_noise, closed=True)
    if d.train_size is not None and d.train_size < 1:
        _fail("data.train_size", d.train_size, "must be >= 1, or null for the whole training split")
    for key, low, high in (("n_samples", 1, MAX_SAMPLES), ("n_features", 1, MAX_FEATURES), ("n_classes", 2, MAX_CLASSES)):
        _check_int(f"data.{key}", getattr(d, key), low, high)
    if d.noise < 0:
        _fail("data.noise", d.noise, "must be >= 0")
    _check_int("data.seed", d.seed, 0, MAX_SEED, " (a torch generator seed, stored as a signed 64-bit integer)")

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

    for key, high in (("epochs", MAX_EPOCHS), ("batch_size", MAX_BATCH), ("eval_batch_size", MAX_BATCH), ("replicas", MAX_REPLICAS)):
        value = getattr(t, key)
        if value < 1:
            _fail(f"trainer.{key}", value, "must be >= 1")
        if value > high:
            _fail(f"trainer.{key}", value, f"must be in [1, {high}]")
    if "bn" in order and any(m.bn_layers if m.bn_layers is not None else [m.batchnorm]):
        if t.batch_size < 2:  # BatchNorm cannot normalize a batch of one
            _fail("trainer.batch_size", t.batch_size, "must be >= 2 with BatchNorm")
        if d.train_size is not None and d.train_size < 2:
            _fail("data.train_size", d.train_size, "must be >= 2 with BatchNorm")
    if t.grad_clip < 0:
        _fail("trainer.grad_clip", t.grad_clip, "must be >= 0 (0 = off)")
    if not t.diverge_loss > 0:
        _fail("trainer.diverge_loss", t.diverge_loss, "must be > 0")
    if not t.save_every_s >= 0:
        _fail("trainer.save_every_s", t.save_every_s, "must be >= 0 (0 = after every epoch)")

    if not re.fullmatch(r"auto|cpu|mps|cuda(:\d+)?", cfg.device):
        _fail("device", cfg.device, "one of auto, cpu, cuda, cuda:N, mps")
    if cfg.threads < 0:
        _fail("threads", cfg.threads, "must be >= 0 (0 = auto)")
    if cfg.threads > MAX_THREADS:
        _fail("threads", cfg.threads, f"must be in [0, {MAX_THREADS}] (0 = auto)")
    # Seeds seed .. seed+replicas-1 are torch generator seeds and go into the
    # records as signed 64-bit integers; torch wraps a negative seed to seed + 2**64.
    high = MAX_SEED - (t.replicas - 1)
    if not 0 <= cfg.seed <= high:
        why = f" with trainer.replicas={t.replicas}" if t.replicas > 1 else ""
        _fail("seed", cfg.seed, f"must be in [0, {high}]{why} (seeds seed .. seed+replicas-1 are torch generator "
              "seeds, stored as signed 64-bit integers; torch would wrap a negative seed to seed + 2**64)")

    why = report_refusal(cfg)
    if why:
        raise ConfigError(why)

    if d.name == "callable":
        try:
            userdata.check_loader(d.loader)
        except userdata.UserDataError as exc:
            raise ConfigError(str(exc)) from None
    # Split sizes the dataset's known size allows (the loader checks the real data again).
    shape = dataset_shape(d)
    if shape is not None:
        n_features, n_classes, n, n_test = shape
        split_sizes(d, n, n_test is not None)
