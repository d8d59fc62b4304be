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
    ("data.root=", "data.root=''", "must be a folder path"),  # '' is the current folder: sets were cached wherever it was typed
    ("device=tpu", "device='tpu'", "auto, cpu, cuda, cuda:N, mps"),
    ("device=cuda:7", "device='cuda:7'", "CUDA device"),
    ("model.order=[linear,act] model.batchnorm=true", "model.batchnorm=True", "needs a bn part in model.order"),
    ("model.order=[linear,bn,act] model.dropout=0.5", "model.dropout=0.5", "needs a dropout part in model.order"),
    ("model.order=[linear,act] model.dropout_layers=[0,0.3]", "model.dropout_layers=[0.0, 0.3]", "needs a dropout part"),
    ("+model.dropuot=0.1", "unknown config key model.dropuot", "allowed in model: widths, activation"),
    ("data.val_fraction=0.001", "data.val_fraction=0.001", "leaves 0 validation"),
    ("data.test_fraction=0.001", "data.test_fraction=0.001", "leaves 0 test examples"),
    # a test split that leaves too little to split again is the test fraction's doing, not val_fraction's
    ("data=digits data.test_fraction=0.999", "data.test_fraction=0.999", "holds out 1795 of the 1797 digits examples"),
    # bounds: beyond them a value is a typo (memory is estimated by preflight)
    ("seed=-1", "seed=-1", "must be in [0, 9223372036854775807]"),  # torch would wrap it to 2**64 - 1
    ("seed=99999999999999999999", "seed=99999999999999999999", "must be in [0, 9223372036854775807]"),
    ("seed=9223372036854775807 trainer.replicas=2", "seed=9223372036854775807", "[0, 9223372036854775806] with trainer.replicas=2"),
    ("data.seed=-1", "data.seed=-1", "must be in [0, 9223372036854775807]"),
    ("trainer.epochs=100000000000000000000000", "trainer.epochs=100000000000000000000000", "must be in [1, 1000000]"),
    ("trainer.replicas=200000", "trainer.replicas=200000", "must be in [1, 10000]"),
    ("trainer.batch_size=1000000000", "trainer.batch_size=1000000000", "must be in [1, 100000000]"),
    ("trainer.eval_batch_size=1000000000", "trainer.eval_batch_size=1000000000", "must be in [1, 100000000]"),
    ("model.widths=[16,1000001]", "model.widths=[16, 1000001]", "every width must be <= 1000000"),
    ("data.n_samples=1000000000", "data.n_samples=1000000000", "must be in [1, 100000000]"),
    ("data.n_classes=1", "data.n_classes=1", "must be in [2, 100000]"),
    ("threads=100000", "threads=100000", "must be in [0, 1024]"),
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


def test_the_largest_allowed_seed_is_one_torch_takes(make_cfg):
    from regbench.config import MAX_SEED, validate

    validate(make_cfg(f"seed={MAX_SEED}"))
    validate(make_cfg(f"seed={MAX_SEED - 4}", "trainer.replicas=5"))
    validate(make_cfg("data.seed=0", "seed=0"))
    import torch

    assert torch.Generator().manual_seed(MAX_SEED).initial_seed() == MAX_SEED


@pytest.mark.parametrize(
    "overrides",
    [
        [],
        ["model.batchnorm=true", "model.widths=[32,8,4]"],
        ["model.bn_layers=[true,false]", "model.order=[linear,act,bn,dropout]", "model.dropout=0.2"],
        ["data=digits"],
        ["data=mnist1d", "model.widths=[100,100]"],
    ],
)
def test_memory_estimate_counts_the_parameters_of_the_real_model(make_cfg, overrides):
    from regbench.config import dataset_shape, memory_estimate
    from regbench.model import build_mlp, count_parameters

    cfg = make_cfg(*overrides)
    n_features, n_classes, _, _ = dataset_shape(cfg.data)
    est = memory_estimate(cfg)
    assert est["n_params"] == count_parameters(build_mlp(cfg.model, n_features, n_classes))
    assert est["params"] == 4 * est["n_params"] * 4  # adam: weights, gradients, 2 buffers
    assert est["total"] == est["params"] + est["activations"] + est["data"]
    more = memory_estimate(make_cfg(*overrides, "trainer.replicas=10"))
    assert more["params"] == 4 * est["n_params"] * (10 * 4 + 1)  # + the template module of the vectorized model
    assert more["activations"] > est["activations"]
