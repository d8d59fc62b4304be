"""The vectorized path: R seeds trained as one model must be R honest runs."""

import csv
import math

import pytest
import torch
from torch.func import functional_call, vmap

from regbench import records, train
from regbench.learner import Learner, module_state
from test_train import interrupt_at

METRICS = ["step", "lr", "train_loss", "train_acc", "fit_loss", "fit_acc", "val_loss", "val_acc",
           "test_loss", "test_acc", "gap_loss", "gap_acc", "grad_norm"]


def rows_by_seed(job):
    out = {}
    for r in csv.DictReader(open(job / records.METRICS_FILE)):
        out.setdefault(int(r["seed"]), []).append(r)
    return out


EVAL = {"fit_loss", "val_loss", "test_loss", "gap_loss", "fit_acc", "val_acc", "test_acc", "gap_acc"}


@pytest.mark.parametrize("batchnorm", [False, True])
def test_without_dropout_each_replica_is_the_single_run(make_cfg, tmp_path, batchnorm):
    """What README promises: without BatchNorm a replica is its seed's single run to
    float rounding (1e-5). With BatchNorm the vmapped batch statistics are summed in
    another order; train-mode values still agree to 1e-5, but the running statistics
    that evaluation uses drift by float rounding per step (measured up to 2e-4 in
    eval losses on MNIST-1D after 3 epochs), so evaluation is compared at 1e-3 and
    accuracies may differ by one example in a split."""
    common = [f"model.batchnorm={batchnorm}", "optim=sgd", "optim.lr=0.1", "trainer.epochs=3", "trainer.grad_clip=1.0"]
    train.run(make_cfg(*common, "trainer.replicas=3"), tmp_path / "stacked")
    stacked = rows_by_seed(tmp_path / "stacked")
    assert sorted(stacked) == [0, 1, 2]
    sizes = records.read_summary(tmp_path / "stacked")["data"]
    one_example = 1.0 / min(sizes["n_train"], sizes["n_val"], sizes["n_test"])
    for seed in (0, 1, 2):
        train.run(make_cfg(*common, f"seed={seed}"), tmp_path / f"single{seed}")
        (single,) = rows_by_seed(tmp_path / f"single{seed}").values()
        assert len(single) == len(stacked[seed]) == 4
        for a, b in zip(single, stacked[seed]):
            for k in METRICS:
                if a[k] == "":
                    assert b[k] == ""
                    continue
                tol = 1e-5
                if batchnorm and k in EVAL:
                    tol = 2 * one_example + 1e-3 if k.endswith("acc") else 1e-3
                assert float(a[k]) == pytest.approx(float(b[k]), abs=tol), (seed, a["epoch"], k)
        if batchnorm:  # running statistics are per replica and match the single run's
            single_bn = module_state(torch.load(tmp_path / f"single{seed}" / records.CHECKPOINT_FILE)["learner"])
            stacked_bn = module_state(torch.load(tmp_path / "stacked" / records.CHECKPOINT_FILE)["learner"], seed)
            for name in ("hidden0.bn.running_mean", "hidden1.bn.running_var"):
                assert torch.allclose(single_bn[name], stacked_bn[name], atol=1e-4)
    summary = records.read_summary(tmp_path / "stacked")
    assert summary["seeds"] == [0, 1, 2] and summary["seed_status"] == {"0": "completed", "1": "completed", "2": "completed"}


def test_the_dropout_module_applies_the_mask_it_is_given(make_cfg):
    p = 0.3
    cfg = make_cfg("model.widths=[512]", "model.order=[linear,act,dropout]", f"model.dropout={p}", "model.activation=tanh")
    learner = Learner(cfg.model, cfg.optim, 1, 8, 3, [0, 1, 2, 3], "cpu")
    block = learner.module.hidden0
    params = {k.removeprefix("hidden0."): v.detach() for k, v in learner.params.items() if k.startswith("hidden0.")}
    x = torch.randn(4, 256, 8)  # (R, B, D)
    masks = learner.masks.draw(256)["hidden0.dropout"]  # drawn outside vmap, passed in as a buffer
    dropped = vmap(lambda p_, m_, x_: functional_call(block, (p_, {"dropout.mask": m_}), (x_,)))(params, masks, x)
    block.eval()
    clean = vmap(lambda p_, x_: functional_call(block, p_, (x_,)))(params, x)
    block.train()
    kept = dropped != 0
    for r in range(4):
        assert kept[r].float().mean().item() == pytest.approx(1 - p, abs=0.01)  # 131072 units per replica
        assert torch.allclose(dropped[r][kept[r]], clean[r][kept[r]] / (1 - p), rtol=1e-5, atol=1e-6)
    assert all(not torch.equal(kept[0], kept[r]) for r in (1, 2, 3))  # masks differ between replicas


def mean_ci(values):
    n = len(values)
    m = sum(values) / n
    sd = math.sqrt(sum((v - m) ** 2 for v in values) / (n - 1))
    return m, 2.365 * sd / math.sqrt(n)  # t(0.975, 7)


def assert_same_rows(a_rows, b_rows, tol=1e-5, where=""):
    assert len(a_rows) == len(b_rows), where
    for a, b in zip(a_rows, b_rows):
        for k in a:
            if k in ("time_s",) or a[k] == b.get(k) or (a[k] == "" and b.get(k) == ""):
                continue
            assert float(a[k]) == pytest.approx(float(b[k]), abs=tol), (where, a["epoch"], k)


def test_a_fused_job_is_the_job_trained_alone(make_cfg, tmp_path):
    """Masks and batch order come from each job's own streams, so a job gives the
    same numbers alone and in any group: here dropout rates (hidden, per layer,
    input), label noise and seeds differ within one group, without BatchNorm."""
    common = ["model.batchnorm=false", "trainer.epochs=3", "trainer.grad_clip=1.0"]
    jobs = [
        ["model.dropout=0.3", "seed=2"],
        ["model.dropout=0", "seed=0", "trainer.replicas=2"],
        ["model.dropout_layers=[0,0.5]", "seed=1", "data.label_noise=0.3"],
        ["model.input_dropout=0.2", "model.dropout=0.1", "seed=3"],
    ]
    outcomes = train.run_group([(make_cfg(*common, *o), tmp_path / f"g{i}", o) for i, o in enumerate(jobs)])
    assert all(o["status"] == "completed" for o in outcomes)
    # the same group in another order and split differently gives the same records
    train.run_group([(make_cfg(*common, *jobs[i]), tmp_path / f"h{i}", jobs[i]) for i in (3, 0)])
    for i, o in enumerate(jobs):
        train.run(make_cfg(*common, *o), tmp_path / f"alone{i}")
        alone, fused = rows_by_seed(tmp_path / f"alone{i}"), rows_by_seed(tmp_path / f"g{i}")
        assert sorted(alone) == sorted(fused)
        for seed in alone:
            assert_same_rows(alone[seed], fused[seed], where=(o, seed))
        if i in (0, 3):
            assert_same_rows(alone[int(o[-1][5:])], rows_by_seed(tmp_path / f"h{i}")[int(o[-1][5:])], where=o)
    noisy = rows_by_seed(tmp_path / "g2")[1][-1]
    assert float(noisy[records.NOISY_FIT_ACC]) >= 0  # memorization measured against its own corrupted labels


def test_masks_have_the_rate_and_scale_and_differ_per_replica():
    from regbench.learner import MaskSampler

    rates = [{"h.dropout": 0.3}, {"h.dropout": 0.3}, {"h.dropout": 0.6}, {}]
    sampler = MaskSampler([("h.dropout", 512)], rates, [0, 1, 2, 3], "cpu")
    m = sampler.draw(256)["h.dropout"]  # (R, B, units)
    assert m.shape == (4, 256, 512)
    for r, p in enumerate((0.3, 0.3, 0.6)):
        kept = m[r] != 0
        assert kept.float().mean().item() == pytest.approx(1 - p, abs=0.01)  # 131072 units per replica
        assert torch.allclose(m[r][kept], torch.full_like(m[r][kept], 1 / (1 - p)))
    assert torch.equal(m[3], torch.ones_like(m[3]))  # rate 0: every unit kept, scale 1
    assert not torch.equal(m[0], m[1])  # another seed, another mask
    alone = MaskSampler([("h.dropout", 512)], [rates[1]], [1], "cpu").draw(256)["h.dropout"][0]
    assert torch.equal(alone, m[1])  # a replica's mask is the one it draws alone


def test_mask_lanes_are_uniform_independent_and_a_partial_replica_draws_what_it_draws_alone():
    from regbench.learner import LANE_LEVELS, MaskSampler, lane_thresholds

    keep = torch.tensor([0.9, 0.7, 0.5, 1 / 3, 1.0])
    t = lane_thresholds(keep)
    assert t.dtype == torch.int16 and t[-1] == 2**15 - 1  # keep 1: above every drawn lane but the top one, and the fill
    prob = (t[:-1].double() + 2**15) / LANE_LEVELS  # P(uniform int16 lane < t)
    assert torch.allclose(prob, keep[:-1].double(), atol=2**-17)
    # the 4 lanes of each 64-bit word: each column kept half the time, neighbours independent
    m = (MaskSampler([("h.dropout", 64)], [{"h.dropout": 0.5}], [7], "cpu").draw(8192)["h.dropout"][0] != 0).float()
    assert m.mean(0).sub(0.5).abs().max().item() < 0.03  # 8192 draws per column: sd 0.0055
    for lag in (1, 2, 3, 4):
        assert (m[:, :-lag] * m[:, lag:]).mean().item() == pytest.approx(0.25, abs=0.01)
    # a union template: replica 0 drops at b only, replica 1 at both; 9 x 17 lanes is not a multiple of 4
    positions = [("input_dropout", 6), ("a.dropout", 30), ("b.dropout", 17)]
    rates = [{"b.dropout": 0.4, "input_dropout": 0.25}, {"a.dropout": 0.2, "b.dropout": 0.2}]
    group = MaskSampler(positions, rates, [3, 4], "cpu")
    alone = MaskSampler([("input_dropout", 6), ("b.dropout", 17)], [rates[0]], [3], "cpu")
    for _ in range(2):  # and the streams go on alike
        g, a = group.draw(9), alone.draw(9)
        assert torch.equal(g["a.dropout"][0], torch.ones(9, 30))
        assert torch.equal(g["b.dropout"][0], a["b.dropout"][0])
        assert torch.equal(g["input_dropout"][0], a["input_dropout"][0])
        assert torch.equal(g["input_dropout"][1], torch.ones(9, 6))  # no input dropout: all kept
        values = g["b.dropout"][0].unique().tolist()
        assert len(values) == 2 and values[0] == 0.0 and values[1] == pytest.approx(1 / 0.6)


def test_a_diverging_replica_does_not_touch_the_others(make_cfg, tmp_path, monkeypatch):
    cfg = make_cfg("trainer.replicas=2", "trainer.epochs=4")
    train.run(cfg, tmp_path / "clean")
    real = Learner.train_epoch

    def poison_replica_1(self, *args, **kw):
        if self.optimizer.state:  # from the second epoch on
            with torch.no_grad():
                self.params["hidden0.linear.weight"][1].fill_(float("nan"))
        return real(self, *args, **kw)

    monkeypatch.setattr(Learner, "train_epoch", poison_replica_1)
    summary = train.run(cfg, tmp_path / "poisoned")
    assert summary["status"] == "completed"
    assert summary["seed_status"] == {"0": "completed", "1": "diverged"}
    clean, poisoned = rows_by_seed(tmp_path / "clean"), rows_by_seed(tmp_path / "poisoned")
    assert [r["epoch"] for r in poisoned[1]] == ["0", "1", "2"]  # recorded up to the epoch it diverged
    for a, b in zip(clean[0], poisoned[0]):
        assert {k: a[k] for k in METRICS} == {k: b[k] for k in METRICS}


def test_a_job_with_a_diverged_replica_resumes_from_its_checkpoint(make_cfg, tmp_path, monkeypatch):
    """The diverged seed's rows stop early; the checkpoint says where, so resume trusts them."""
    cfg = make_cfg("trainer.replicas=2", "trainer.epochs=5")
    real = Learner.train_epoch

    def poison_replica_1(self, *args, **kw):
        if self.optimizer.state:
            with torch.no_grad():
                self.params["hidden0.linear.weight"][1].fill_(float("nan"))
        return real(self, *args, **kw)

    monkeypatch.setattr(Learner, "train_epoch", poison_replica_1)
    train.run(cfg, tmp_path / "straight")
    interrupt_at(monkeypatch, 4)
    with pytest.raises(KeyboardInterrupt):
        train.run(cfg, tmp_path / "resumed")
    summary = train.run(cfg, tmp_path / "resumed")
    assert summary["resumed_after_epoch"] == 3 and summary["seed_status"] == {"0": "completed", "1": "diverged"}
    assert not list((tmp_path / "resumed").glob(".corrupt-*"))
    strip = lambda rows: [{k: v for k, v in r.items() if k != "time_s"} for r in rows]
    a, b = rows_by_seed(tmp_path / "straight"), rows_by_seed(tmp_path / "resumed")
    assert strip(a[0]) == strip(b[0]) and strip(a[1]) == strip(b[1]) and len(b[1]) == 3


def test_replicas_resume_like_single_runs(make_cfg, tmp_path, monkeypatch):
    cfg = make_cfg("trainer.replicas=2", "model.dropout=0.3", "model.batchnorm=true", "trainer.epochs=4")
    train.run(cfg, tmp_path / "straight")
    interrupt_at(monkeypatch, 3)
    with pytest.raises(KeyboardInterrupt):
        train.run(cfg, tmp_path / "resumed")
    train.run(cfg, tmp_path / "resumed")
    strip = lambda rows: [{k: v for k, v in r.items() if k != "time_s"} for r in rows]
    a, b = rows_by_seed(tmp_path / "straight"), rows_by_seed(tmp_path / "resumed")
    assert strip(a[0]) == strip(b[0]) and strip(a[1]) == strip(b[1])


@pytest.mark.parametrize("replicas", [1, 3])
def test_the_hot_loop_never_reads_back_to_the_host(make_cfg, monkeypatch, replicas):
    """No .item()/.tolist()/bool(tensor) per step: on CUDA each would be a sync.
    (No GPU here: reading a tensor's value on the host is made to raise instead.)"""
    cfg = make_cfg("model.batchnorm=true", "model.dropout=0.2", "trainer.grad_clip=1.0")
    from regbench.data import build_dataset

    data = build_dataset(cfg.data)
    learner = Learner(cfg.model, cfg.optim, 2, data.n_features, data.n_classes, list(range(replicas)), "cpu")

    import sys

    def forbid(name):
        original = getattr(torch.Tensor, name)

        def guarded(self, *a, **k):
            # torch's optimizers keep their step counter on the host by design (not capturable)
            if "torch/optim" in sys._getframe(1).f_code.co_filename:
                return original(self, *a, **k)
            raise AssertionError(f"host read of a tensor value ({name}) inside the training loop")

        return guarded

    for name in ("item", "tolist", "__bool__", "__float__", "__int__", "numpy"):
        monkeypatch.setattr(torch.Tensor, name, forbid(name))
    sums = learner.train_epoch(data.train, 32, 1.0, torch.ones(replicas, dtype=torch.bool))
    monkeypatch.undo()
    assert sums[3] == len(data.train) and sums[4] == 6


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("shape", [(1, 2), (128, 10), (3200, 10), (7, 100)])
def test_fast_cross_entropy_is_cross_entropy(reduction, shape):
    """learner.cross_entropy takes log_softmax along the transposed axis (faster on CPU):
    same values and gradients as F.cross_entropy."""
    import torch.nn.functional as F

    from regbench.learner import cross_entropy

    g = torch.Generator().manual_seed(0)
    logits = (torch.randn(*shape, generator=g) * 5).requires_grad_()
    y = torch.randint(0, shape[1], (shape[0],), generator=g)
    # Both sides compute in float32 with the same formula but reduce in another
    # order, so they agree to a few units in the last place of the largest
    # value involved, not to a fixed absolute tolerance: a softmax gradient of
    # about 1 rounds in steps of 1.2e-7 (one float32 epsilon), and one element
    # in 32,000 off by two steps is rounding, not a bug. Over 30 seeds of these
    # shapes the worst difference measured here was 6 such steps; 32 leaves room
    # for other CPUs' kernels and is still 30,000x tighter than a 0.1% error.
    eps = torch.finfo(torch.float32).eps

    def close(a, b):
        return torch.allclose(a, b, rtol=0, atol=32 * eps * b.abs().max().item())

    ours, ref = cross_entropy(logits, y, reduction), F.cross_entropy(logits, y, reduction=reduction)
    assert close(ours, ref)
    w = torch.rand(ours.shape, generator=g)
    (g_ours,) = torch.autograd.grad((ours * w).sum(), logits)
    (g_ref,) = torch.autograd.grad((ref * w).sum(), logits)
    assert close(g_ours, g_ref)
    assert not close(g_ours, g_ref * 1.001 + 1e-3)  # the check still sees a real difference


@pytest.mark.parametrize("batchnorm", [False, True])
@pytest.mark.parametrize("pass_bytes", [None, 5120, 1000])
def test_evaluating_the_replicas_at_once_gives_each_replicas_own_metrics(make_cfg, monkeypatch, batchnorm, pass_bytes):
    """epoch_metrics of a vectorized learner (all replicas in one batched pass)
    against the same replicas evaluated one by one through functional_call: the
    same fit/val/test losses and accuracies, diagnostics and noisy-label
    metrics to float rounding, with each job's own labels (label noise 0, 0.2,
    0.4 in one group), a diverged replica left out, and passes so small that
    the replicas (pass_bytes=5120) or the examples (1000) split over several."""
    from regbench import learner as learner_module
    from regbench.data import build_dataset
    from regbench.diagnostics import Probe

    if pass_bytes is not None:
        monkeypatch.setitem(learner_module.EVAL_PASS_BYTES, "cpu", pass_bytes)
        monkeypatch.setattr(learner_module, "MIN_PASS_EXAMPLES", 8)  # 15 examples a pass at 1000 bytes
    common = [f"model.batchnorm={batchnorm}", "model.order=[linear,bn,act,dropout]", "data.test_fraction=0.2"]
    jobs = [["data.label_noise=0", "model.dropout=0.3"], ["data.label_noise=0.2", "model.dropout=0"],
            ["data.label_noise=0.4", "model.dropout=0.1"], ["data.label_noise=0.2", "model.dropout=0.5"]]
    cfgs = [make_cfg(*common, *j) for j in jobs]
    datas = [build_dataset(c.data) for c in cfgs]
    datas[3] = datas[1]  # two jobs of one data config share its Dataset (the group's data cache)
    assert datas[0].test is not None and datas[2].n_corrupted > datas[1].n_corrupted > 0
    first = datas[0]
    labels = torch.stack([d.train.y for d in datas])
    learner = Learner([c.model for c in cfgs], cfgs[0].optim, 3, first.n_features, first.n_classes, [0, 1, 2, 3], "cpu", labels)
    for _ in range(2):  # trained a little, so the BN running statistics differ per replica
        learner.train_epoch(first.train, 32, 0.0, torch.ones(4, dtype=torch.bool))
    with torch.no_grad():
        learner.params["hidden0.linear.weight"][2].fill_(float("nan"))  # replica 2 diverged
    probe = Probe(learner.module, max_examples=50)
    live = [0, 1, 3]
    shape = learner_module.eval_pass_shape(len(live), 40, learner.row_bytes, "cpu")  # (replicas, examples) a pass
    assert shape == {None: (3, 40), 5120: (2, 40), 1000: (1, 15)}[pass_bytes]
    at_once = train.epoch_metrics(learner, datas, live, 40, True, probe)
    learner.layerwise = False  # the one-by-one path (functional_call per replica)
    one_by_one = train.epoch_metrics(learner, datas, live, 40, True, probe)
    learner.layerwise = True
    assert [sorted(r) for r in at_once] == [sorted(r) for r in one_by_one]
    assert records.NOISY_FIT_ACC not in at_once[0] and records.NOISY_FIT_ACC in at_once[1]
    assert any(k.startswith("bn_var_shift") for k in at_once[0]) == batchnorm
    for a, b in zip(at_once, one_by_one):
        assert all(math.isfinite(v) for v in a.values())
        for k in a:
            assert a[k] == pytest.approx(b[k], rel=1e-5, abs=1e-6), k
    everyone = train.epoch_metrics(learner, datas, [0, 1, 2, 3], 40, True, probe)
    assert math.isnan(everyone[2]["fit_loss"]) and everyone[3] == pytest.approx(at_once[2], rel=1e-5, abs=1e-6)


def test_predictions_are_argmax_with_ties_and_nan():
    """learner.predictions takes max's indices for speed: the same class as
    argmax, the first of tied maxima, NaN where a row has one."""
    from regbench.learner import predictions

    gen = torch.Generator().manual_seed(0)
    logits = torch.randint(0, 3, (5, 64, 10), generator=gen).float()  # many ties
    logits[0, :8] = float("nan")
    logits[1, 3, 4] = float("inf")
    logits[2, 5] = float("-inf")
    assert torch.equal(predictions(logits), logits.argmax(-1))
    assert torch.equal(predictions(logits[3]), logits[3].argmax(1))
