"""Bad input is refused before any work, with one line naming field, value and what is allowed."""

import pytest
from hydra.errors import ConfigCompositionException

from regbench.config import ConfigError
from regbench.records import METRICS_FILE, SUMMARY_FILE
from regbench.train import run

BAD = [
    ("model.dropout=1.0", "model.dropout=1.0", "[0, 1)"),
    ("model.dropout=-0.1", "model.dropout=-0.1", "[0, 1)"),
    ("model.input_dropout=1.5", "model.input_dropout=1.5", "[0, 1)"),
    ("model.order=[linear,bn,relu]", "model.order='relu'", "linear, bn, act, dropout"),
    ("model.order=[linear,act,act]", "model.order=", "at most once"),
    ("model.order=[bn,act]", "model.order=", "linear exactly once"),
    ("model.widths=[]", "model.widths=[]", "at least one"),
    ("model.widths=[16,0]", "model.widths=[16, 0]", ">= 1"),
    ("model.dropout_layers=[0.1]", "model.dropout_layers=[0.1]", "one rate per hidden layer (2"),
    ("model.dropout_layers=[0.1,1.2]", "model.dropout_layers=1.2", "[0, 1)"),
    ("model.bn_layers=[true]", "model.bn_layers=[True]", "one true/false per hidden layer (2"),
    ("model.activation=swish", "model.activation='swish'", "relu, gelu"),
    ("model.bn_momentum=0", "model.bn_momentum=0.0", "(0, 1]"),
    ("trainer.batch_size=0", "trainer.batch_size=0", ">= 1"),
    ("trainer.epochs=0", "trainer.epochs=0", ">= 1"),
    ("trainer.batch_size=1 model.batchnorm=true", "trainer.batch_size=1", ">= 2 with BatchNorm"),
    ("trainer.replicas=0", "trainer.replicas=0", ">= 1"),
    ("optim.lr=0", "optim.lr=0.0", "> 0"),
    ("optim.lr=-1e-3", "optim.lr=-0.001", "> 0"),
    ("optim.name=rmsprop", "optim.name='rmsprop'", "sgd, adam, adamw"),
    ("data.label_noise=1.5", "data.label_noise=1.5", "[0, 1]"),
    ("data.label_noise=-0.1", "data.label_noise=-0.1", "[0, 1]"),
    ("data.train_size=100000", "data.train_size=100000", "<= 192"),
    ("data.name=imagenet", "data.name='imagenet'", "mnist1d, digits"),
    ("device=tpu", "device='tpu'", "auto, cpu, cuda, cuda:N, mps"),
    ("device=cuda:7", "device='cuda:7'", "CUDA device"),
    ("model.order=[linear,act] model.batchnorm=true", "model.batchnorm=True", "needs a bn part in model.order"),
    ("model.order=[linear,bn,act] model.dropout=0.5", "model.dropout=0.5", "needs a dropout part in model.order"),
    ("model.order=[linear,act] model.dropout_layers=[0,0.3]", "model.dropout_layers=[0.0, 0.3]", "needs a dropout part"),
    ("+model.dropuot=0.1", "unknown config key model.dropuot", "allowed in model: widths, activation"),
    ("data.val_fraction=0.001", "data.val_fraction=0.001", "leaves 0 validation"),
    ("data.test_fraction=0.001", "data.test_fraction=0.001", "leaves 0 test examples"),
]


@pytest.mark.parametrize("override,names,allowed", BAD, ids=[b[0] for b in BAD])
def test_bad_value_is_one_clear_line_and_nothing_is_recorded(make_cfg, tmp_path, override, names, allowed):
    cfg = make_cfg(*override.split())
    with pytest.raises(ConfigError) as err:
        run(cfg, tmp_path)
    msg = str(err.value)
    assert "\n" not in msg
    assert names in msg and allowed in msg
    assert not (tmp_path / METRICS_FILE).exists() and not (tmp_path / SUMMARY_FILE).exists()


@pytest.mark.skipif(__import__("torch").cuda.is_available(), reason="this machine has CUDA")
def test_cuda_without_gpu_is_refused(make_cfg, tmp_path):
    with pytest.raises(ConfigError, match=r"device='cuda' is not allowed: this machine has 0 CUDA device"):
        run(make_cfg("device=cuda"), tmp_path)


@pytest.mark.parametrize(
    "override,fragment",
    [
        ("model.dropuot=0.1", "dropuot"),  # typo in a key
        ("model.dropout=abc", "abc"),  # wrong type
        ("trainer.epochs=2.5", "2.5"),
    ],
)
def test_schema_catches_typos_and_types_at_compose_time(make_cfg, override, fragment):
    with pytest.raises(ConfigCompositionException) as err:
        make_cfg(override)
    assert fragment in str(err.value) or fragment in str(err.value.__cause__)
