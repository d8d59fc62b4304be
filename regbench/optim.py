"""Adam, AdamW and SGD through torch's fused kernels, without ``torch.optim``.

Why: every ``torch.optim.Optimizer`` imports ``torch._dynamo`` the first time
it is used (``Optimizer.step`` is wrapped by ``_use_grad_for_differentiable``,
which asks dynamo for a graph break; ``zero_grad``, ``add_param_group`` and
``state_dict`` are wrapped by ``_disable_dynamo``). That import costs about as
much as ``import torch`` itself (1.4 s of a 1-epoch run here, 2.6 s on a
loaded machine), in every process, for a model whose epoch takes 0.1 s.

The update itself is torch's: :class:`FusedOptimizer` calls the same kernels
``torch.optim.Adam(fused=True)``, ``AdamW(fused=True)`` and ``SGD(fused=True)``
call (``torch._fused_adam_``, ``torch._fused_adamw_``, ``torch._fused_sgd_``),
with the same state (``step`` as a float32 tensor, ``exp_avg``,
``exp_avg_sq``, ``momentum_buffer``) and the same ``state_dict`` layout, so a
checkpoint written by either loads into the other. tests/test_optim.py checks
the parameters against torch.optim bit for bit over several steps, and the
schedules' learning rates against torch's schedulers.

:class:`Schedule` is the per-epoch learning-rate schedule (constant, cosine,
step) with the recurrences of torch's ``LambdaLR``, ``CosineAnnealingLR`` and
``StepLR`` (same floats), and their ``state_dict`` keys.
"""

from __future__ import annotations

import math
from typing import Any

import torch

KERNEL_DEVICES = ("cpu", "cuda")  # where torch has the fused kernels
ALL = "all replicas"  # FusedOptimizer: every replica's slice


class FusedOptimizer:
    """One parameter group; ``name`` is adam, adamw or sgd (as ``optim.name``).

    ``replicas``: (lr, weight_decay) of each replica when the parameters are
    R replicas stacked along their first dimension (a fused group whose jobs
    differ in ``optim.lr`` / ``optim.weight_decay``). The kernels take one
    learning rate and decay per call, so the replicas that share them are
    updated by one call over their slices: the same kernel, hence the same
    numbers, as each job alone. ``param_groups[0]["lr"]`` is then replica 0's;
    :attr:`replica_lrs` holds each one's (the schedule moves them all).

    ``stacked``: the parameters are replicas stacked along their first
    dimension, and every call gives the kernel each replica's slice as its own
    tensor. The kernels run a tensor's last ``numel % vector width`` elements
    in scalar code, which rounds differently from the vector lanes: over whole
    stacked tensors, which of a replica's elements fall there would depend on
    how many replicas are stacked, so a job's numbers would depend on its
    group, and those rounding differences grow over a long training. Slice by
    slice, each replica is updated exactly as the job alone updates its
    parameters (tests/test_optim.py; a 25-replica Adam step: 183 against 134 us)."""

    def __init__(self, params, name: str, lr: float, betas=(0.9, 0.999), eps: float = 1e-8, weight_decay: float = 0.0,
                 momentum: float = 0.0, nesterov: bool = False, dampening: float = 0.0,
                 replicas: "list[tuple[float, float]] | None" = None, stacked: bool = False):
        self.name = name
        self.stacked = stacked or replicas is not None
        self.params: list[torch.Tensor] = list(params)
        self.replica_lrs = [float(lr_) for lr_, _ in replicas] if replicas else None
        self.replica_wds = [float(wd) for _, wd in replicas] if replicas else None
        if replicas:
            lr, weight_decay = self.replica_lrs[0], self.replica_wds[0]
        if name == "sgd":
            group = {"lr": lr, "momentum": momentum, "dampening": dampening, "weight_decay": weight_decay,
                     "nesterov": nesterov, "maximize": False}
        else:
            group = {"lr": lr, "betas": tuple(betas), "eps": eps, "weight_decay": weight_decay, "amsgrad": False,
                     "maximize": False, "decoupled_weight_decay": name == "adamw"}
        group.update(foreach=None, fused=True, capturable=False, differentiable=False)
        self.defaults = {k: v for k, v in group.items()}
        self.param_groups = [{**group, "params": self.params}]
        self.state: dict[torch.Tensor, dict[str, Any]] = {}
        self._views: dict[int, tuple] = {}  # id(tensor) -> (tensor, its replica slices), see _rows

    # ------------------------------------------------------------ training

    def zero_grad(self, set_to_none: bool = True) -> None:
        for p in self.params:
            if set_to_none:
                p.grad = None
            elif p.grad is not None:
                p.grad.zero_()

    @torch.no_grad()
    def step(self) -> None:
        group = self.param_groups[0]
        params = [p for p in self.params if p.grad is not None]
        if not params:
            return
        grads = [p.grad for p in params]
        if self.replica_lrs is None:
            calls = [(group["lr"], group["weight_decay"], None if not self.stacked else ALL)]
        else:  # one call per distinct (lr, decay), over those replicas' slices
            by: dict[tuple[float, float], list[int]] = {}
            for r, key in enumerate(zip(self.replica_lrs, self.replica_wds)):
                by.setdefault(key, []).append(r)
            calls = [(lr_, wd, rows) for (lr_, wd), rows in by.items()]
        if self.name == "sgd":
            momentum = group["momentum"]
            buffers = [self.state.get(p, {}).get("momentum_buffer") for p in params]
            first = momentum != 0 and all(b is None for b in buffers)
            if first:  # as torch's _fused_sgd: empty buffers, which the kernel fills on its first step
                buffers = [torch.empty_like(g) for g in grads]
                for p, b in zip(params, buffers):
                    self.state.setdefault(p, {})["momentum_buffer"] = b
            for lr_, wd, rows in calls:
                torch._fused_sgd_(
                    self._rows(params, rows), self._rows(grads, rows, kept=False), [] if momentum == 0 else self._rows(buffers, rows),
                    weight_decay=wd, momentum=momentum, lr=lr_, dampening=group["dampening"],
                    nesterov=group["nesterov"], maximize=False, is_first_step=first, grad_scale=None, found_inf=None,
                )
            return
        for p in params:
            st = self.state.setdefault(p, {})
            if not st:  # as torch.optim.Adam's _init_group with fused=True
                st["step"] = torch.zeros((), dtype=torch.float32, device=p.device)
                st["exp_avg"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                st["exp_avg_sq"] = torch.zeros_like(p, memory_format=torch.preserve_format)
        steps = [self.state[p]["step"] for p in params]
        torch._foreach_add_(steps, 1)
        kernel = torch._fused_adamw_ if group["decoupled_weight_decay"] else torch._fused_adam_
        beta1, beta2 = group["betas"]
        exp_avgs = [self.state[p]["exp_avg"] for p in params]
        exp_avg_sqs = [self.state[p]["exp_avg_sq"] for p in params]
        for lr_, wd, rows in calls:
            kernel(
                self._rows(params, rows), self._rows(grads, rows, kept=False), self._rows(exp_avgs, rows), self._rows(exp_avg_sqs, rows),
                [], steps if rows is None else [st for st, p in zip(steps, params) for _ in (range(len(p)) if rows is ALL else rows)],  # a tensor's slices share its count
                amsgrad=False, lr=lr_, beta1=beta1, beta2=beta2, weight_decay=wd,
                eps=group["eps"], maximize=False, grad_scale=None, found_inf=None,
            )

    def _rows(self, tensors: list, rows, kept: bool = True) -> list:
        """The tensors themselves, or their slices for replicas ``rows``
        (contiguous views), tensor by tensor. ``kept``: tensors that live from
        step to step (parameters, state), whose slices are made once (making
        them took 4.5% of a 25-replica BatchNorm group's time); gradients are
        new tensors each step."""
        if rows is None:
            return tensors
        sliced = [self._slices(t) if kept else t.unbind(0) for t in tensors]
        if rows is ALL:
            return [x for views in sliced for x in views]
        return [views[r] for views in sliced for r in rows]

    def _slices(self, t: torch.Tensor) -> "tuple[torch.Tensor, ...]":
        hit = self._views.get(id(t))
        if hit is None or hit[0] is not t:
            hit = self._views[id(t)] = (t, t.unbind(0))
        return hit[1]

    # ------------------------------------------------------------ state (torch.optim's layout)

    def state_dict(self) -> dict:
        index = {p: i for i, p in enumerate(self.params)}
        groups = [{k: v for k, v in g.items() if k != "params"} | {"params": list(range(len(self.params)))} for g in self.param_groups]
        return {"state": {index[p]: dict(st) for p, st in self.state.items() if st}, "param_groups": groups}

    def load_state_dict(self, state_dict: dict) -> None:
        saved = state_dict["param_groups"]
        if len(saved) != 1 or len(saved[0]["params"]) != len(self.params):
            raise ValueError("an optimizer state of another number of parameters")
        group = self.param_groups[0]
        for k, v in saved[0].items():
            if k != "params" and k in group:
                group[k] = tuple(v) if k == "betas" else v
        self.state = {}
        self._views = {}
        for i, p in zip(saved[0]["params"], self.params):
            st = state_dict["state"].get(i)
            if not st:
                continue
            moved = {}
            for k, v in st.items():
                if torch.is_tensor(v):
                    v = v.to(device=p.device, dtype=torch.float32 if k == "step" else p.dtype)
                moved[k] = v
            self.state[p] = moved


def make_torch_optimizer(cfg, params, fast: bool = True) -> "torch.optim.Optimizer":
    """torch.optim's own: ``fast`` picks its fused (CPU, CUDA) or foreach kernels,
    False its defaults (a Python loop over parameters on CPU). For devices
    without fused kernels, and for the baselines in scripts/bench.py."""
    params = list(params)
    kernels = {}
    if fast:
        kernels = {"fused": True} if params and params[0].device.type in KERNEL_DEVICES else {"foreach": True}
    if cfg.name == "sgd":
        return torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum, nesterov=cfg.nesterov,
                               weight_decay=cfg.weight_decay, **kernels)
    cls = torch.optim.Adam if cfg.name == "adam" else torch.optim.AdamW
    return cls(params, lr=cfg.lr, betas=tuple(cfg.betas), weight_decay=cfg.weight_decay, **kernels)


def make_optimizer(cfg, params, fast: bool = True, replicas=None, stacked: bool = False):
    """The optimizer of ``cfg`` (an OptimConfig): :class:`FusedOptimizer` where
    torch has the fused kernels, else torch.optim's (see :func:`make_torch_optimizer`).
    ``replicas``: (lr, weight_decay) per stacked replica (FusedOptimizer only);
    ``stacked``: the parameters are stacked replicas (see :class:`FusedOptimizer`)."""
    params = list(params)
    if not fast or not params or params[0].device.type not in KERNEL_DEVICES:
        if replicas is not None:
            raise ValueError("per-replica optim.lr / optim.weight_decay need torch's fused kernels (CPU or CUDA)")
        return make_torch_optimizer(cfg, params, fast)
    if cfg.name == "sgd":
        return FusedOptimizer(params, "sgd", cfg.lr, weight_decay=cfg.weight_decay, momentum=cfg.momentum,
                              nesterov=cfg.nesterov, replicas=replicas, stacked=stacked)
    return FusedOptimizer(params, cfg.name, cfg.lr, betas=tuple(cfg.betas), weight_decay=cfg.weight_decay, replicas=replicas,
                          stacked=stacked)


class Schedule:
    """The learning rate per epoch, stepped once per epoch: ``constant``,
    ``cosine`` (to 0 at ``epochs``) or ``step`` (times ``gamma`` every
    ``step_size`` epochs). Same recurrences, hence the same floats, as torch's
    LambdaLR(1.0), CosineAnnealingLR(T_max=epochs) and StepLR."""

    def __init__(self, optimizer, kind: str, epochs: int, step_size: int = 1, gamma: float = 0.1):
        self.optimizer, self.kind = optimizer, kind
        self.T_max, self.step_size, self.gamma = epochs, step_size, gamma
        self.eta_min = 0.0
        self.base_lrs = [g["lr"] for g in optimizer.param_groups]
        for g in optimizer.param_groups:
            g.setdefault("initial_lr", g["lr"])
        self.last_epoch = 0
        self._step_count = 1
        self._last_lr = list(self.base_lrs)
        # a fused group whose jobs differ in lr: each replica's own, by the same recurrence
        lrs = getattr(optimizer, "replica_lrs", None)
        self.replica_base_lrs = list(lrs) if lrs is not None else None

    def _next(self, lr: float, base: float) -> float:
        e = self.last_epoch
        if self.kind == "cosine":
            if e == 0:
                return lr
            if (e - 1 - self.T_max) % (2 * self.T_max) == 0:
                return lr + (base - self.eta_min) * (1 - math.cos(math.pi / self.T_max)) / 2
            return (1 + math.cos(math.pi * e / self.T_max)) / (1 + math.cos(math.pi * (e - 1) / self.T_max)) * (
                lr - self.eta_min
            ) + self.eta_min
        if self.kind == "step":
            return lr if e == 0 or e % self.step_size != 0 else lr * self.gamma
        return base * 1.0

    def step(self) -> None:
        self._step_count += 1
        self.last_epoch += 1
        for g, base in zip(self.optimizer.param_groups, self.base_lrs):
            g["lr"] = self._next(g["lr"], base)
        self._last_lr = [g["lr"] for g in self.optimizer.param_groups]
        if self.replica_base_lrs is not None:
            lrs = self.optimizer.replica_lrs
            self.optimizer.replica_lrs = [self._next(lr, base) for lr, base in zip(lrs, self.replica_base_lrs)]

    def get_last_lr(self) -> list[float]:
        return list(self._last_lr)

    def state_dict(self) -> dict:
        return {"last_epoch": self.last_epoch, "_step_count": self._step_count, "base_lrs": list(self.base_lrs),
                "_last_lr": list(self._last_lr), "T_max": self.T_max, "eta_min": self.eta_min,
                "step_size": self.step_size, "gamma": self.gamma}

    def load_state_dict(self, state: dict) -> None:
        """Also a torch scheduler's state_dict (checkpoints of earlier versions)."""
        self.last_epoch = int(state["last_epoch"])
        self._step_count = int(state.get("_step_count", self.last_epoch + 1))
        self.base_lrs = list(state.get("base_lrs", self.base_lrs))
        self._last_lr = list(state.get("_last_lr", [g["lr"] for g in self.optimizer.param_groups]))


def make_scheduler(cfg, optimizer, epochs: int):
    """Stepped once per epoch. :class:`Schedule` for a :class:`FusedOptimizer`,
    torch's schedulers for torch's optimizers."""
    if isinstance(optimizer, FusedOptimizer):
        return Schedule(optimizer, cfg.schedule if cfg.schedule in ("cosine", "step") else "constant", epochs,
                        step_size=getattr(cfg, "step_size", 1), gamma=getattr(cfg, "gamma", 0.1))
    if cfg.schedule == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=epochs)
    if cfg.schedule == "step":
        return torch.optim.lr_scheduler.StepLR(optimizer, step_size=cfg.step_size, gamma=cfg.gamma)
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda epoch: 1.0)

