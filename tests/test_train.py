import csv
import math
import os

import pytest
import torch
from omegaconf import OmegaConf

from regbench import records, train
from regbench.learner import Learner, evaluate, module_state
from regbench.data import build_dataset
from regbench.model import build_mlp


def read_metrics(path):
    return list(csv.DictReader(open(path / records.METRICS_FILE)))


def test_run_writes_every_epoch_and_a_summary(make_cfg, tmp_path):
    summary = train.run(make_cfg("trainer.epochs=3"), tmp_path)
    rows = read_metrics(tmp_path)
    columns = list(rows[0])
    assert columns[: len(records.BASE_COLUMNS) + 1] == list(records.BASE_COLUMNS) + [records.GRAD_NORM]
    assert "weight_norm/head" in columns and "dead_frac/hidden1" in columns and "preact_p50/hidden0" in columns
    assert [int(r["epoch"]) for r in rows] == [0, 1, 2, 3]
    assert rows[0]["train_loss"] == "" and rows[1]["train_loss"] != ""
    for r in rows:
        assert float(r["gap_loss"]) == pytest.approx(float(r["val_loss"]) - float(r["fit_loss"]))
        assert float(r["gap_acc"]) == pytest.approx(float(r["fit_acc"]) - float(r["val_acc"]))
    steps = [int(r["step"]) for r in rows]
    assert steps == [0, 6, 12, 18]  # 192 training examples / batch 32
    on_disk = records.read_summary(tmp_path)
    assert on_disk["status"] == summary["status"] == "completed"
    assert on_disk["epochs_completed"] == 3
    assert on_disk["config"]["trainer.epochs"] == 3 and on_disk["config"]["seed"] == 0
    assert on_disk["final"]["epoch"] == 3
    best = min(rows, key=lambda r: float(r["val_loss"]))
    assert on_disk["best"]["epoch"] == int(best["epoch"])
    assert on_disk["data"]["n_train"] == 192
    assert (tmp_path / records.CHECKPOINT_FILE).exists()


def test_same_config_and_seed_give_identical_metrics(make_cfg, tmp_path):
    cfg = make_cfg("model.dropout=0.3", "model.batchnorm=true", "trainer.epochs=3")
    strip = lambda rows: [{k: v for k, v in r.items() if k != "time_s"} for r in rows]
    train.run(cfg, tmp_path / "a")
    train.run(cfg, tmp_path / "b")
    assert strip(read_metrics(tmp_path / "a")) == strip(read_metrics(tmp_path / "b"))
    train.run(make_cfg("model.dropout=0.3", "model.batchnorm=true", "trainer.epochs=3", "seed=1"), tmp_path / "c")
    assert strip(read_metrics(tmp_path / "a")) != strip(read_metrics(tmp_path / "c"))


def test_evaluate_is_eval_mode_and_restores_the_mode(make_cfg):
    cfg = make_cfg("model.dropout=0.5", "model.batchnorm=true")
    data = build_dataset(cfg.data)
    model = build_mlp(cfg.model, data.n_features, data.n_classes)
    model.train()
    a = evaluate(model, data.train, 64)
    assert model.training
    b = evaluate(model, data.train, 1000)  # batch size changes nothing in eval mode
    assert torch.allclose(a[0], b[0]) and torch.equal(a[2], b[2])
    model.eval()
    evaluate(model, data.val, 64)
    assert not model.training
    # BatchNorm running statistics are not touched by evaluation
    assert torch.equal(model.hidden0.bn.running_mean, torch.zeros(16))


def test_divergence_is_recorded_not_raised(make_cfg, tmp_path):
    summary = train.run(make_cfg("optim=sgd", "optim.lr=1e8", "trainer.epochs=5"), tmp_path)
    assert summary["status"] == "diverged"
    assert "diverge_loss" in summary["error"]
    rows = read_metrics(tmp_path)
    assert len(rows) == summary["epochs_completed"] + 1 < 6
    assert records.read_summary(tmp_path)["status"] == "diverged"


def test_exception_is_recorded_as_failed_with_traceback(make_cfg, tmp_path, monkeypatch):
    calls = []

    def boom(*args, **kw):
        calls.append(1)
        if len(calls) == 2:
            raise RuntimeError("boom in epoch 2")
        return real(*args, **kw)

    real = Learner.train_epoch
    monkeypatch.setattr(Learner, "train_epoch", boom)
    with pytest.raises(RuntimeError):
        train.run(make_cfg("trainer.epochs=4"), tmp_path)
    summary = records.read_summary(tmp_path)
    assert summary["status"] == "failed" and "boom in epoch 2" in summary["error"] and "Traceback" in summary["error"]
    assert [r["epoch"] for r in read_metrics(tmp_path)] == ["0", "1"]  # epochs before the failure kept


def test_interrupt_is_recorded_and_keeps_checkpoint(make_cfg, tmp_path, monkeypatch):
    interrupt_at(monkeypatch, 3)
    with pytest.raises(KeyboardInterrupt):
        train.run(make_cfg("trainer.epochs=5"), tmp_path)
    assert records.read_summary(tmp_path)["status"] == "interrupted"
    assert torch.load(tmp_path / records.CHECKPOINT_FILE, weights_only=False)["epoch"] == 2


def test_label_noise_records_memorization(make_cfg, tmp_path):
    train.run(make_cfg("data.label_noise=0.5", "trainer.epochs=2"), tmp_path)
    rows = read_metrics(tmp_path)
    for r in rows:
        noisy, clean = float(r[records.NOISY_FIT_ACC]), float(r[records.NOISY_CLEAN_ACC])
        assert 0 <= noisy <= 1 and 0 <= clean <= 1 and noisy + clean <= 1  # a prediction matches at most one


@pytest.mark.parametrize(
    "overrides,expected",
    [
        (["optim.schedule=cosine", "trainer.epochs=4"], [0.001, 0.001, 0.000854, 0.0005, 0.000146]),
        (["optim.schedule=step", "optim.step_size=2", "optim.gamma=0.5", "trainer.epochs=4"], [0.001, 0.001, 0.001, 0.0005, 0.0005]),
    ],
)
def test_lr_schedules(make_cfg, tmp_path, overrides, expected):
    train.run(make_cfg(*overrides), tmp_path)
    assert [float(r["lr"]) for r in read_metrics(tmp_path)] == pytest.approx(expected, abs=1e-6)


@pytest.mark.parametrize("opt", ["sgd", "adam", "adamw"])
def test_optimizers_learn(make_cfg, tmp_path, opt):
    summary = train.run(make_cfg(f"optim={opt}", "trainer.epochs=8", "optim.nesterov=true" if opt == "sgd" else "optim.weight_decay=0.001"), tmp_path)
    rows = read_metrics(tmp_path)
    assert float(rows[-1]["fit_loss"]) < float(rows[0]["fit_loss"])
    assert summary["final"]["val_acc"] > 0.6  # 3 well-separated blobs


def test_grad_clip_bounds_the_update(make_cfg, tmp_path):
    cfg = make_cfg("optim=sgd", "optim.lr=0.1", "optim.momentum=0", "trainer.grad_clip=1e-6", "trainer.epochs=1")
    train.run(cfg, tmp_path)
    assert float(read_metrics(tmp_path)[1]["grad_norm"]) > 1e-3  # recorded before clipping
    torch.manual_seed(0)
    init = build_mlp(cfg.model, 8, 3).state_dict()
    trained = module_state(torch.load(tmp_path / records.CHECKPOINT_FILE, weights_only=False)["learner"])
    moved = torch.cat([(trained[k] - init[k]).flatten() for k in init]).norm().item()
    assert 0 < moved <= 6 * 0.1 * 1e-6 * 1.01  # 6 steps of lr x clipped norm


# ---------------------------------------------------------------- resume


def interrupt_at(monkeypatch, epoch: int):
    """Make the next run raise KeyboardInterrupt when it starts training ``epoch``."""
    real = Learner.train_epoch
    calls = []

    def fake(*args, **kw):
        calls.append(1)
        if len(calls) == epoch:
            monkeypatch.setattr(Learner, "train_epoch", real)
            raise KeyboardInterrupt
        return real(*args, **kw)

    monkeypatch.setattr(Learner, "train_epoch", fake)


def without_time(rows):
    return [{k: v for k, v in r.items() if k != "time_s"} for r in rows]


def test_interrupted_run_resumes_to_the_same_metrics(make_cfg, tmp_path, monkeypatch):
    cfg = make_cfg("model.dropout=0.3", "model.batchnorm=true", "optim=sgd", "optim.schedule=cosine", "trainer.epochs=6")
    train.run(cfg, tmp_path / "straight")
    interrupt_at(monkeypatch, 4)
    with pytest.raises(KeyboardInterrupt):
        train.run(cfg, tmp_path / "resumed")
    assert len(read_metrics(tmp_path / "resumed")) == 4  # epochs 0..3
    summary = train.run(cfg, tmp_path / "resumed")
    assert summary["status"] == "completed" and summary["resumed_after_epoch"] == 3
    assert without_time(read_metrics(tmp_path / "resumed")) == without_time(read_metrics(tmp_path / "straight"))
    assert summary["best"] == records.read_summary(tmp_path / "straight")["best"]


def test_an_interrupt_just_after_a_checkpoint_replaced_the_last_records_the_new_ones_epoch(make_cfg, tmp_path, monkeypatch):
    """Ctrl-C between a save's os.replace and the line that records its epoch
    left summary.json one epoch behind the file: the interrupt line said
    "resumes it from epoch 1" and the run resumed after epoch 2 (a flaky
    end-to-end test caught it)."""
    real = train.save_checkpoint

    def save(path, state):
        real(path, state)
        if state["epoch"] == 2:
            raise KeyboardInterrupt

    monkeypatch.setattr(train, "save_checkpoint", save)
    cfg = make_cfg("trainer.epochs=4")
    with pytest.raises(KeyboardInterrupt):
        train.run(cfg, tmp_path)
    summary = records.read_summary(tmp_path)
    assert summary["status"] == "interrupted" and summary["checkpoint_epoch"] == 2, summary
    assert "the checkpoint of epoch 2 is kept" in summary["error"]
    monkeypatch.setattr(train, "save_checkpoint", real)
    assert train.run(cfg, tmp_path)["resumed_after_epoch"] == 2


def test_rows_past_the_checkpoint_are_not_duplicated(make_cfg, tmp_path, monkeypatch):
    """kill -9 between writing an epoch's row and its checkpoint leaves one row too many."""
    cfg = make_cfg("trainer.epochs=4")
    interrupt_at(monkeypatch, 3)
    with pytest.raises(KeyboardInterrupt):
        train.run(cfg, tmp_path)
    path = tmp_path / records.METRICS_FILE
    lines = path.read_text().splitlines()
    path.write_text("\n".join(lines + [lines[-1].replace("0,2,", "0,3,", 1), "0,4,1"]) + "\n")  # extra + torn row
    train.run(cfg, tmp_path)
    assert [int(r["epoch"]) for r in read_metrics(tmp_path)] == [0, 1, 2, 3, 4]


def test_completed_run_is_skipped(make_cfg, tmp_path):
    cfg = make_cfg()
    train.run(cfg, tmp_path)
    before = (tmp_path / records.METRICS_FILE).read_text()
    again = train.run(cfg, tmp_path)
    assert again["skipped"] and again["status"] == "completed"
    assert (tmp_path / records.METRICS_FILE).read_text() == before


def test_failed_run_is_run_again_from_scratch(make_cfg, tmp_path, monkeypatch):
    monkeypatch.setattr(Learner, "train_epoch", lambda *a, **k: (_ for _ in ()).throw(RuntimeError("boom")))
    with pytest.raises(RuntimeError):
        train.run(make_cfg(), tmp_path)
    monkeypatch.undo()
    summary = train.run(make_cfg(), tmp_path)
    assert summary["status"] == "completed"
    assert [int(r["epoch"]) for r in read_metrics(tmp_path)] == [0, 1, 2]


def test_corrupt_checkpoint_starts_afresh(make_cfg, tmp_path, monkeypatch):
    cfg = make_cfg("trainer.epochs=3")
    interrupt_at(monkeypatch, 3)
    with pytest.raises(KeyboardInterrupt):
        train.run(cfg, tmp_path)
    (tmp_path / records.CHECKPOINT_FILE).write_bytes(b"garbage")
    before = (tmp_path / records.METRICS_FILE).read_bytes()
    summary = train.run(cfg, tmp_path)
    assert summary["status"] == "completed" and summary["resumed_after_epoch"] is None
    assert [int(r["epoch"]) for r in read_metrics(tmp_path)] == [0, 1, 2, 3]
    (aside,) = tmp_path.glob(".corrupt-*")  # the old records are set aside, not lost
    assert (aside / records.METRICS_FILE).read_bytes() == before
    assert (aside / records.CHECKPOINT_FILE).read_bytes() == b"garbage"
    assert "checkpoint.pt is unreadable" in (aside / "reason.txt").read_text()
    assert records.find_job_dirs(tmp_path) == [tmp_path.resolve()]  # the report does not take it for a job


def interrupted_and_straight(make_cfg, tmp_path, monkeypatch, *overrides, epochs=6, at=5):
    """A run interrupted when it starts epoch ``at`` (checkpoint at at-1), and the
    same config trained straight through, for comparison."""
    cfg = make_cfg(*overrides, f"trainer.epochs={epochs}")
    train.run(cfg, tmp_path / "straight")
    interrupt_at(monkeypatch, at)
    with pytest.raises(KeyboardInterrupt):
        train.run(cfg, tmp_path / "job")
    return cfg, tmp_path / "job", without_time(read_metrics(tmp_path / "straight"))


def cut_inside_row(text: str, epoch: int) -> str:
    """metrics.csv cut in the middle of the row of ``epoch`` (seed 0)."""
    start = text.index(f"\n0,{epoch},") + 1
    return text[: start + 12]


@pytest.mark.parametrize(
    "damage, reason",
    [
        (lambda p: p.write_text(cut_inside_row(p.read_text(), 2)), "lacks epochs 2-4 of seed 0"),
        (lambda p: p.write_text(cut_inside_row(p.read_text(), 2) + "\n" + p.read_text().split("\n", 5)[5]),
         "line 4 has"),  # a cut row followed by later ones: [0, 1, 2(cut), 3, 4]
        (lambda p: p.write_text(""), "metrics.csv has no header"),
        (lambda p: p.unlink(), "metrics.csv is missing"),
        (lambda p: p.write_text(p.read_text().replace("\n0,3,", "\n0,abc,", 1)), "line 5 has no valid seed and epoch"),
        (lambda p: p.write_text(p.read_text().replace("\n0,3,", "\n0,2,", 1)), "lacks epoch 3 of seed 0"),
        (lambda p: p.write_text("\n".join((lambda ls: ls[:4] + ls[3:])(p.read_text().split("\n")))),
         "has epochs 0, 1, 2, 2, 3, ... out of order or twice"),
    ],
    ids=["cut-mid-file", "cut-row-then-more", "empty", "deleted", "abc-epoch", "epoch-relabelled", "epoch-twice"],
)
def test_resume_verifies_the_rows_before_it_trusts_them(make_cfg, tmp_path, monkeypatch, caplog, damage, reason):
    cfg, job, straight = interrupted_and_straight(make_cfg, tmp_path, monkeypatch)
    metrics = job / records.METRICS_FILE
    damage(metrics)
    damaged = metrics.read_bytes() if metrics.exists() else None
    summary = train.run(cfg, job)
    assert summary["status"] == "completed" and summary["resumed_after_epoch"] is None
    assert without_time(read_metrics(job)) == straight  # afresh, with a header, every epoch once
    (aside,) = job.glob(".corrupt-*")
    assert reason in (aside / "reason.txt").read_text()
    assert reason in caplog.text and "starting afresh" in caplog.text
    if damaged is not None:
        assert (aside / records.METRICS_FILE).read_bytes() == damaged  # nothing lost or rewritten
    assert (aside / records.CHECKPOINT_FILE).exists() and (aside / records.SUMMARY_FILE).exists()


def test_rows_cut_past_the_checkpoint_do_not_matter(make_cfg, tmp_path, monkeypatch):
    """A kill while writing the row after the checkpoint's epoch cuts it inside a
    number: that row is trained again, never kept as a shorter number."""
    cfg, job, straight = interrupted_and_straight(make_cfg, tmp_path, monkeypatch)
    metrics = job / records.METRICS_FILE
    extra = read_metrics(tmp_path / "straight")[5]
    metrics.write_text(metrics.read_text() + ",".join(extra.values())[:-3])  # epoch 5, no newline
    summary = train.run(cfg, job)
    assert summary["resumed_after_epoch"] == 4
    assert without_time(read_metrics(job)) == straight
    assert not list(job.glob(".corrupt-*"))


def test_a_checkpoint_of_another_config_is_never_loaded(make_cfg, tmp_path, monkeypatch):
    """Same shapes, other dropout: loading it would give a wrong record silently."""
    cfg, job, straight = interrupted_and_straight(make_cfg, tmp_path, monkeypatch, "model.dropout=0.2")
    other = make_cfg("model.dropout=0.5", "trainer.epochs=6")
    interrupt_at(monkeypatch, 5)
    with pytest.raises(KeyboardInterrupt):
        train.run(other, tmp_path / "other")
    (job / records.CHECKPOINT_FILE).write_bytes((tmp_path / "other" / records.CHECKPOINT_FILE).read_bytes())
    summary = train.run(cfg, job)
    assert summary["resumed_after_epoch"] is None
    assert without_time(read_metrics(job)) == straight
    (aside,) = job.glob(".corrupt-*")
    assert "written by another config" in (aside / "reason.txt").read_text()


def test_a_checkpoint_that_does_not_fit_leaves_the_rows_untouched(make_cfg, tmp_path, monkeypatch):
    """The decision comes before any file changes: a state that fails to load
    (here one tensor of the wrong shape) sets the old records aside whole."""
    cfg, job, straight = interrupted_and_straight(make_cfg, tmp_path, monkeypatch)
    path = job / records.CHECKPOINT_FILE
    ckpt = torch.load(path, weights_only=True)
    ckpt["learner"]["model"]["params"]["hidden0.linear.weight"] = torch.zeros(1, 3, 3)
    torch.save(ckpt, path)
    rows = (job / records.METRICS_FILE).read_bytes()
    summary = train.run(cfg, job)
    assert summary["resumed_after_epoch"] is None and summary["status"] == "completed"
    assert without_time(read_metrics(job)) == straight
    (aside,) = job.glob(".corrupt-*")
    assert (aside / records.METRICS_FILE).read_bytes() == rows
    assert "does not fit this model" in (aside / "reason.txt").read_text()


@pytest.mark.parametrize("content", ["[]", "null", "{not json", '{"status": "completed"}'])  # the last: read as another config's run
def test_a_summary_that_is_not_a_record_starts_afresh(make_cfg, tmp_path, content):
    cfg = make_cfg()
    (tmp_path / records.SUMMARY_FILE).write_text(content)
    assert train.run(cfg, tmp_path)["status"] == "completed"
    (aside,) = tmp_path.glob(".corrupt-*")
    assert (aside / records.SUMMARY_FILE).read_text() == content


def test_leftover_temp_files_are_cleared_and_threads_recorded(make_cfg, tmp_path):
    (tmp_path / ".summary.json.abc123.tmp").write_text("")  # a kill inside write_json_atomic
    (tmp_path / "checkpoint.tmp").write_bytes(b"half")
    summary = train.run(make_cfg("threads=1"), tmp_path)
    assert not list(tmp_path.glob("*.tmp")) and not list(tmp_path.glob(".*.tmp"))
    assert summary["threads"] == records.read_summary(tmp_path)["threads"] == 1


def test_folder_with_another_config_is_refused(make_cfg, tmp_path):
    train.run(make_cfg("model.dropout=0.1"), tmp_path)
    with pytest.raises(train.ConfigError, match=r"another config \(model.dropout: 0.1 -> 0.2\)"):
        train.run(make_cfg("model.dropout=0.2"), tmp_path)
    train.run(make_cfg("model.dropout=0.1", "threads=2"), tmp_path)  # runtime knobs do not count


def test_diagnostics_switch_off_cleanly(make_cfg, tmp_path):
    train.run(make_cfg("trainer.diagnostics=false", "model.batchnorm=true"), tmp_path)
    assert list(read_metrics(tmp_path)[0]) == list(records.BASE_COLUMNS)


def test_variance_shift_grows_when_dropout_feeds_batchnorm(make_cfg, tmp_path):
    shift = {}
    for p in (0, 0.5):
        train.run(make_cfg("model.order=[linear,act,dropout,bn]", "model.batchnorm=true", f"model.dropout={p}",
                           "trainer.epochs=10", "trainer.batch_size=16"), tmp_path / str(p))
        shift[p] = float(read_metrics(tmp_path / str(p))[-1]["bn_var_shift/hidden1"])
    assert shift[0] < 1.2 < 1.5 < shift[0.5], shift


def test_infinite_values_resume_and_skip(make_cfg, tmp_path):
    """inf is stored as "inf" in JSON; reading it back must not look like another config."""
    cfg = make_cfg("trainer.diverge_loss=inf")
    train.run(cfg, tmp_path)
    assert train.run(cfg, tmp_path)["skipped"]


def test_objective_for_sweepers_averages_completed_seeds():
    per_seed = {
        "0": {"status": "completed", "best": {"val_acc": 0.6, "val_acc_max": 0.9}},
        "1": {"status": "completed", "best": {"val_acc": 0.8, "val_acc_max": 0.9}},
        "2": {"status": "diverged", "best": {"val_acc": 0.1}},
    }
    assert train._objective({"per_seed": per_seed}) == pytest.approx(0.7)
    assert math.isnan(train._objective({"per_seed": {"0": {"status": "diverged", "best": {}}}}))


def test_a_folder_in_use_is_refused_without_touching_it_and_free_once_released(make_cfg, tmp_path):
    cfg = make_cfg("trainer.epochs=2")
    holder = records.acquire_lock(tmp_path)  # as another process training there would hold it
    with pytest.raises(records.FolderInUse, match=r"is in use by process \d+ on "):
        train.run(cfg, tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == [records.LOCK_FILE]
    assert records.folder_in_use(tmp_path) is not None
    records.release_lock(holder)  # the kernel does this too when a process dies, kill -9 included
    assert records.folder_in_use(tmp_path) is None
    assert train.run(cfg, tmp_path)["status"] == "completed"
    assert records.folder_in_use(tmp_path) is None  # released at the end


def test_a_checkpoint_from_another_optimizer_kernel_keeps_this_ones(make_cfg):
    """load_state_dict takes fused/foreach from the saved groups; the learner keeps its own choice."""
    cfg = make_cfg()
    data = build_dataset(cfg.data)
    learner = Learner(cfg.model, cfg.optim, 2, data.n_features, data.n_classes, [0], "cpu")
    old = torch.optim.Adam(learner.module.parameters(), lr=cfg.optim.lr, foreach=True)
    for p in learner.module.parameters():
        p.grad = torch.ones_like(p)
    old.step()
    state = learner.state_dict()
    state["optimizer"] = old.state_dict()
    learner.load_state_dict(state)
    assert all(g["fused"] and not g["foreach"] for g in learner.optimizer.param_groups)
    learner.train_epoch(data.train, 32, 0.0, torch.ones(1, dtype=torch.bool))  # and it steps


def test_saves_wait_for_save_every_s_and_a_resume_is_exact_all_the_same(make_cfg, tmp_path, monkeypatch):
    """trainer.save_every_s: checkpoint.pt and summary.json are written once the
    wait has passed and after the last epoch, not after every epoch. An
    interrupt between two saves resumes from the older checkpoint: the rows
    after it are trained again, to the same numbers."""
    saved = []
    real_save = train.save_checkpoint
    monkeypatch.setattr(train, "save_checkpoint", lambda path, state: (saved.append(state["epoch"]), real_save(path, state)))
    cfg = make_cfg("trainer.epochs=6", "model.dropout=0.3", "trainer.save_every_s=3600")
    train.run(cfg, tmp_path / "straight", show_progress=False)
    assert saved == [6]  # only after the last epoch
    saved.clear()
    clock = iter(range(0, 10**6, 10))  # 10 s of wall time per perf_counter call
    monkeypatch.setattr(train, "_save_clock", lambda: float(next(clock)))
    every = make_cfg("trainer.epochs=6", "model.dropout=0.3", "trainer.save_every_s=25")
    interrupt_at(monkeypatch, 5)
    with pytest.raises(KeyboardInterrupt):
        train.run(every, tmp_path / "resumed", show_progress=False)
    assert saved == [3], saved  # 10 s an epoch: the first save once 25 s have passed
    monkeypatch.undo()
    summary = train.run(every, tmp_path / "resumed", show_progress=False)
    assert summary["resumed_after_epoch"] == saved[-1]
    assert without_time(read_metrics(tmp_path / "resumed")) == without_time(read_metrics(tmp_path / "straight"))


def test_a_sigterm_swallowed_by_a_log_handler_still_stops_the_run(make_cfg, tmp_path):
    """SIGTERM raises Interrupted wherever the main thread is; logging's emit
    catches Exception (and is quiet with raiseExceptions off). The run must stop
    and record itself interrupted all the same, at the next epoch."""
    import logging
    import os
    import signal as signal_mod

    class SignalOnce(logging.StreamHandler):
        sent = False

        def flush(self):  # inside StreamHandler.emit's try/except Exception
            super().flush()
            if not SignalOnce.sent and "epoch 2/" in getattr(self, "last", ""):
                SignalOnce.sent = True
                os.kill(os.getpid(), signal_mod.SIGTERM)

        def format(self, record):
            self.last = super().format(record)
            return self.last

    handler = SignalOnce(open(os.devnull, "w"))
    logger = logging.getLogger("regbench.train")
    logger.addHandler(handler)
    level, raise_exc = logger.level, logging.raiseExceptions
    logger.setLevel(logging.INFO)
    logging.raiseExceptions = False
    try:
        with pytest.raises((KeyboardInterrupt, train.Interrupted)):
            train.run(make_cfg("trainer.epochs=6"), tmp_path, show_progress=False)
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)
        logging.raiseExceptions = raise_exc
    assert SignalOnce.sent
    summary = records.read_summary(tmp_path)
    assert summary["status"] == "interrupted" and summary["epochs_completed"] < 6


def test_a_run_resumed_on_changed_data_starts_afresh_and_keeps_the_old_records(make_cfg, tmp_path, monkeypatch):
    """An interrupted run on the user's file whose contents changed before the re-run: its epochs were
    trained on the old data, so they are set aside (not resumed under the new fingerprint)."""
    import numpy as np

    rng = np.random.default_rng(0)
    path = tmp_path / "mine.npz"
    np.savez(path, x=rng.normal(size=(120, 4)).astype("float32"), y=np.arange(120) % 3)
    cfg = make_cfg("data=file", f"data.path={path}", "trainer.epochs=4")
    interrupt_at(monkeypatch, 3)
    with pytest.raises(KeyboardInterrupt):
        train.run(cfg, tmp_path / "job")
    old = records.read_summary(tmp_path / "job")["data"]["fingerprint"]
    np.savez(path, x=rng.normal(size=(120, 4)).astype("float32"), y=np.arange(120) % 3)
    summary = train.run(cfg, tmp_path / "job")
    assert summary["status"] == "completed" and summary["data"]["fingerprint"] != old
    assert [int(r["epoch"]) for r in read_metrics(tmp_path / "job")] == [0, 1, 2, 3, 4]  # trained from the start
    (aside,) = (tmp_path / "job").glob(".other-data-*")
    assert records.read_summary(aside)["data"]["fingerprint"] == old


@pytest.mark.skipif((os.cpu_count() or 1) < 2, reason="one CPU: torch's default is one thread already")
def test_threads_0_trains_a_small_model_on_one_thread_and_a_large_one_on_the_default(make_cfg, tmp_path):
    """threads=0 (auto): the default MLP on MNIST-1D gained 3% from a second
    thread, and beside another busy process two threads took 4-27x longer; a
    larger step keeps torch's default. The process's own setting is put back."""
    import torch

    default = torch.get_num_threads()
    run = train.run
    small = run(make_cfg("threads=0"), tmp_path / "small", show_progress=False)
    large = run(make_cfg("threads=0", "model.widths=[1024,1024]"), tmp_path / "large", show_progress=False)  # 34M a step
    chosen = run(make_cfg("threads=2"), tmp_path / "chosen", show_progress=False)
    assert (small["threads"], large["threads"], chosen["threads"]) == (1, default, 2)
    torch.set_num_threads(default)
    run(make_cfg("threads=0"), tmp_path / "again", show_progress=False)
    assert torch.get_num_threads() == default  # as it was


@pytest.mark.parametrize("folder", ["/tmp/o/runs/2026-12-03/16-36-19.566257", "/tmp/proj (copy)/x", "/home/josé/r", "/a,b/c",
                                    "/it's/x", '/a b/it\'s "q"', "/a[1]/b"])
def test_the_resume_hint_of_a_single_run_parses_back_to_its_folder(folder):
    """"the same command with hydra.run.dir=..." is pasted into a shell and read by Hydra: a folder like
    `proj (copy)` did not parse ("mismatched input ' ('"), `josé` neither, and a comma made a sweep."""
    import shlex
    from types import SimpleNamespace

    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.types import RunMode

    hc = SimpleNamespace(mode=RunMode.RUN, run=OmegaConf.create({"dir": "outputs/runs/${now:%H-%M-%S}"}))
    hint = train.rerun_command(hc, folder)
    assert hint.startswith("the same command with ")
    (arg,) = shlex.split(hint.removeprefix("the same command with "))
    assert OverridesParser.create().parse_overrides([arg])[0].value() == folder
    given = SimpleNamespace(mode=RunMode.RUN, run=OmegaConf.create({"dir": "/my/runs/a"}))  # a folder the user named
    assert train.rerun_command(given, folder) == "the same command"
