"""regbench.optim: torch's fused kernels without torch.optim (whose first use
imports torch._dynamo). The same numbers as torch.optim, bit for bit, the same
state_dict layout, the same learning-rate schedules."""

import subprocess
import sys

import pytest
import torch
from omegaconf import OmegaConf

from regbench.optim import FusedOptimizer, Schedule, make_optimizer, make_scheduler, make_torch_optimizer

CASES = [
    {"name": "adam", "lr": 1e-2, "betas": [0.9, 0.999], "weight_decay": 0.0},
    {"name": "adam", "lr": 3e-3, "betas": [0.8, 0.99], "weight_decay": 1e-2},
    {"name": "adamw", "lr": 1e-2, "betas": [0.9, 0.999], "weight_decay": 0.1},
    {"name": "sgd", "lr": 0.1, "momentum": 0.9, "nesterov": False, "weight_decay": 1e-3},
    {"name": "sgd", "lr": 0.05, "momentum": 0.9, "nesterov": True, "weight_decay": 0.0},
    {"name": "sgd", "lr": 0.05, "momentum": 0.0, "nesterov": False, "weight_decay": 0.0},
]


def cfg_of(case, schedule="constant"):
    base = {"momentum": 0.0, "nesterov": False, "betas": [0.9, 0.999], "weight_decay": 0.0, "schedule": schedule,
            "step_size": 2, "gamma": 0.5}
    return OmegaConf.create({**base, **case})


def params(seed):
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(5, 7, generator=g).requires_grad_(), torch.randn(7, generator=g).requires_grad_(),
            torch.randn(3, 5, 7, generator=g).requires_grad_()]


def train_steps(opt, ps, steps, sched=None):
    g = torch.Generator().manual_seed(123)
    for i in range(steps):
        opt.zero_grad(set_to_none=True)
        loss = sum((p * torch.randn(p.shape, generator=g)).sum() + (p**2).sum() for p in ps)
        loss.backward()
        opt.step()
        if sched is not None:
            sched.step()


@pytest.mark.parametrize("case", CASES, ids=lambda c: f"{c['name']}-{c['lr']}")
def test_the_same_parameters_as_torch_optim_fused_bit_for_bit(case):
    cfg = cfg_of(case, "cosine")
    mine, theirs = params(0), params(0)
    opt = make_optimizer(cfg, mine)
    ref = make_torch_optimizer(cfg, theirs)
    assert isinstance(opt, FusedOptimizer) and ref.defaults["fused"]
    train_steps(opt, mine, 7, make_scheduler(cfg, opt, 7))
    train_steps(ref, theirs, 7, make_scheduler(cfg, ref, 7))
    for a, b in zip(mine, theirs):
        assert torch.equal(a, b)


@pytest.mark.parametrize("case", CASES[:1] + CASES[3:4], ids=["adam", "sgd"])
def test_state_dicts_cross_load_both_ways(case):
    """A checkpoint of either optimizer resumes in the other: same numbers."""
    cfg = cfg_of(case)
    straight = params(1)
    train_steps(make_optimizer(cfg, straight), straight, 6)
    for first, second in ((make_torch_optimizer, make_optimizer), (make_optimizer, make_torch_optimizer)):
        ps = params(1)
        opt = first(cfg, ps)
        train_steps(opt, ps, 3)
        state = opt.state_dict()
        ps2 = [p.detach().clone().requires_grad_() for p in ps]
        opt2 = second(cfg, ps2)
        opt2.load_state_dict(state)
        g = torch.Generator().manual_seed(123)  # the same gradients as steps 4..6 of the straight run
        for i in range(6):
            loss = sum((p * torch.randn(p.shape, generator=g)).sum() + (p**2).sum() for p in ps2)
            if i < 3:
                continue
            opt2.zero_grad(set_to_none=True)
            loss.backward()
            opt2.step()
        for a, b in zip(ps2, straight):
            assert torch.allclose(a, b, rtol=0, atol=1e-6), (first.__name__, second.__name__)


@pytest.mark.parametrize("schedule", ["constant", "cosine", "step"])
def test_schedules_give_torchs_learning_rates(schedule):
    cfg = cfg_of(CASES[0], schedule)
    ours = Schedule(FusedOptimizer(params(0), "adam", 0.01), {"constant": "constant"}.get(schedule, schedule), 9,
                    step_size=2, gamma=0.5)
    ref = make_scheduler(cfg, make_torch_optimizer(cfg, params(0)), 9)
    for _ in range(12):  # past T_max too
        ours.optimizer.step()
        ref.optimizer.step()
        ours.step()
        ref.step()
        assert ours.optimizer.param_groups[0]["lr"] == ref.optimizer.param_groups[0]["lr"]
    resumed = Schedule(FusedOptimizer(params(0), "adam", 0.01), schedule, 9, step_size=2, gamma=0.5)
    resumed.optimizer.param_groups[0]["lr"] = ref.optimizer.param_groups[0]["lr"]
    resumed.load_state_dict(ref.state_dict())  # an older checkpoint's torch scheduler state
    assert resumed.last_epoch == ref.last_epoch


def test_a_training_process_does_not_import_torch_dynamo(tmp_path):
    code = (
        "import sys, tempfile\n"
        "from hydra import compose, initialize_config_module\n"
        "from regbench import train\n"
        "from regbench.config import register_configs\n"
        "register_configs()\n"
        "with initialize_config_module(config_module='regbench.conf', version_base='1.3'):\n"
        "    cfg = lambda *o: compose(config_name='config', overrides=['data=blobs', 'data.n_samples=200', 'trainer.epochs=2',"
        " 'optim.schedule=cosine', 'model.batchnorm=true', *o])\n"
        f"    train.run(cfg('model.dropout=0.3'), {str(tmp_path / 'one')!r}, show_progress=False)\n"
        f"    train.run_group([(cfg('model.dropout=0.1', f'seed={{s}}'), {str(tmp_path)!r} + f'/g{{s}}', []) for s in range(3)])\n"
        "print(sorted(m for m in sys.modules if m.startswith('torch._dynamo')))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().splitlines()[-1] == "[]", out.stdout


@pytest.mark.parametrize("name", ["adam", "adamw", "sgd"])
def test_stacked_replicas_are_updated_as_each_alone(name):
    """5 replicas of a 100-unit bias stacked (500 values: the kernel's scalar
    tail would hold replica 4's last 4) update exactly as each replica's own tensor."""
    from regbench.optim import FusedOptimizer

    torch.manual_seed(0)
    kw = {"momentum": 0.9} if name == "sgd" else {"weight_decay": 0.01}
    stacked = torch.randn(5, 100, requires_grad=True)
    alone = [stacked[r].detach().clone().requires_grad_() for r in range(5)]
    opt = FusedOptimizer([stacked], name, 1e-2, stacked=True, **kw)
    opts = [FusedOptimizer([p], name, 1e-2, **kw) for p in alone]
    for _ in range(20):
        g = torch.randn(5, 100) * 1e-3
        stacked.grad = g.clone()
        opt.step()
        for r, (p, o) in enumerate(zip(alone, opts)):
            p.grad = g[r].clone()
            o.step()
    for r in range(5):
        assert torch.equal(stacked[r].detach(), alone[r].detach()), r
