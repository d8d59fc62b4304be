"""The models of one job and how they learn: one seed, or several seeds trained
as one vectorized model.

``Learner`` hides the difference. With one seed it is a plain ``nn.Module``
and a plain optimizer. With R seeds it keeps R copies of the *same* module
stacked along a leading replica dimension (``torch.func.stack_module_state``)
and runs a training step for all of them at once with
``vmap(functional_call(...), randomness="different")``: real ``nn.Dropout``
(a different mask per replica) and real ``nn.BatchNorm1d`` (running statistics
per replica, updated in place in the stacked buffers). Every optimizer regbench
offers is elementwise, so one optimizer over the stacked tensors is R
independent optimizers.

Small MLPs are bound by per-step overhead, not arithmetic: the hot loop keeps
data on the device, indexes batches from seeded permutations, and never reads
a value back to the host; sums stay on the device until the epoch ends.
"""

from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call, stack_module_state, vmap

from .data import Split
from .model import build_mlp, count_parameters


def cross_entropy(logits: torch.Tensor, y: torch.Tensor, reduction: str = "mean") -> torch.Tensor:
    """``F.cross_entropy`` for (N, C) logits: the same values and gradients
    (tests/test_replicas.py checks both).

    On CPU, PyTorch's log_softmax over a short last dimension (C = 10) is 2-5x
    slower than over the long first dimension of the transposed view, forward
    and backward (measured here, one thread: 3200 x 10, 488 us against 95 us
    forward). Same operation, taken along the fast axis.
    """
    if logits.device.type != "cpu":
        return F.cross_entropy(logits, y, reduction=reduction)
    return F.nll_loss(torch.log_softmax(logits.T, 0).T, y, reduction=reduction)


def make_optimizer(cfg, params, fast: bool = True) -> torch.optim.Optimizer:
    """``fast``: the whole update in one fused kernel per parameter tensor (CPU and
    CUDA), elsewhere one multi-tensor kernel per update op (foreach). False:
    torch's defaults, which on CPU loop over parameters and ops in Python."""
    params = list(params)
    kernels = {}
    if fast:
        kernels = {"fused": True} if params and params[0].device.type in ("cpu", "cuda") else {"foreach": True}
    if cfg.name == "sgd":
        return torch.optim.SGD(
            params, lr=cfg.lr, momentum=cfg.momentum, nesterov=cfg.nesterov, weight_decay=cfg.weight_decay, **kernels
        )
    cls = torch.optim.Adam if cfg.name == "adam" else torch.optim.AdamW
    return cls(params, lr=cfg.lr, betas=tuple(cfg.betas), weight_decay=cfg.weight_decay, **kernels)


def make_scheduler(cfg, optimizer, epochs: int):
    """Stepped once per epoch."""
    if cfg.schedule == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=epochs)
    if cfg.schedule == "step":
        return torch.optim.lr_scheduler.StepLR(optimizer, step_size=cfg.step_size, gamma=cfg.gamma)
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda epoch: 1.0)


@torch.inference_mode()
def evaluate(module: nn.Module, split: Split, batch_size: int, state: Optional[dict] = None, probe=None):
    """Mean loss, accuracy and predictions over a whole split, in eval mode.

    The only place that switches the model's mode; it restores the mode it
    found. ``state`` (parameters and buffers of one replica) is used through
    ``functional_call`` instead of the module's own tensors. ``probe``
    (diagnostics hooks) is attached for this pass only. Returns device tensors:
    (loss (), acc (), pred (N,)).
    """
    forward = module if state is None else (lambda x: functional_call(module, state, (x,), tie_weights=False))
    was_training = module.training
    module.eval()
    if probe is not None:
        probe.attach()
    try:
        loss_sum = torch.zeros((), device=split.x.device)
        preds = []
        for start in range(0, len(split), batch_size):
            logits = forward(split.x[start : start + batch_size])  # (B, C)
            loss_sum += cross_entropy(logits, split.y[start : start + batch_size], reduction="sum")
            preds.append(logits.argmax(1))
        pred = torch.cat(preds)
        return loss_sum / len(split), (pred == split.y).float().mean(), pred
    finally:
        if probe is not None:
            probe.detach()
        module.train(was_training)


class Learner:
    """R = len(seeds) models of one config, trained in lockstep."""

    def __init__(self, model_cfg, optim_cfg, epochs: int, n_features: int, n_classes: int, seeds: list[int], device):
        self.seeds = list(seeds)
        self.device = torch.device(device)
        models = []
        for seed in self.seeds:  # the same initialization as a single run with that seed
            torch.manual_seed(seed)
            models.append(build_mlp(model_cfg, n_features, n_classes).to(self.device))
        self.module = models[0]  # R = 1: the model; R > 1: the template called through functional_call
        self.module.train()
        self.has_bn = any(isinstance(m, nn.BatchNorm1d) for m in self.module.modules())
        self.n_params = count_parameters(self.module)
        self.stacked = len(models) > 1
        if self.stacked:
            params, self.buffers = stack_module_state(models)  # {name: (R, ...)}
            self.params = {k: v.detach().requires_grad_() for k, v in params.items()}
            self._forward = vmap(self._call, randomness="different")  # in_dims=0 for every leaf
            trainable = list(self.params.values())
        else:
            trainable = list(self.module.parameters())
        self.optimizer = make_optimizer(optim_cfg, trainable)
        self.scheduler = make_scheduler(optim_cfg, self.optimizer, epochs)
        self.generators = [torch.Generator().manual_seed(s) for s in self.seeds]  # batch order per seed

    # ------------------------------------------------------------ training

    def _call(self, params, buffers, xb):
        return functional_call(self.module, (params, buffers), (xb,), tie_weights=False)  # (B, C); an MLP ties none

    def _grad_norms(self, grads: list[torch.Tensor]) -> torch.Tensor:
        """Global L2 norm of each replica's gradient: (R,)."""
        if not self.stacked:
            return torch.nn.utils.get_total_norm(grads).reshape(1)
        return torch.cat([g.flatten(1) for g in grads], 1).norm(dim=1)  # one reduction, not one per tensor

    def train_epoch(self, train: Split, batch_size: int, grad_clip: float, alive: torch.Tensor, grad_norms: bool = True):
        """One pass over a seeded permutation of the training set, per replica.

        ``alive`` (R,) bool masks replicas that diverged: their loss no longer
        reaches the gradients. Returns (loss_sum, correct, grad_norm_sum) as (R,)
        device tensors (grad norms only measured when asked for or clipping),
        and the examples seen and steps taken.
        """
        n, R = len(train), len(self.seeds)
        perms = torch.stack([torch.randperm(n, generator=g) for g in self.generators]).to(self.device)  # (R, N)
        zeros = lambda: torch.zeros(R, device=self.device)
        loss_sum, correct, gn_sum = zeros(), zeros(), zeros()
        seen = steps = 0
        for start in range(0, n, batch_size):
            idx = perms[:, start : start + batch_size]  # (R, B)
            b = idx.shape[1]
            if self.has_bn and b < 2:  # BatchNorm cannot normalize a single example
                continue
            xb, yb = train.x[idx], train.y[idx]  # (R, B, D), (R, B)
            if self.stacked:
                logits = self._forward(self.params, self.buffers, xb)  # (R, B, C)
                # the loss outside vmap: one kernel for all replicas, not a batching rule per op
                losses = cross_entropy(logits.flatten(0, 1), yb.flatten(), reduction="none").view(R, b).mean(1)
                total = torch.where(alive, losses, torch.zeros_like(losses)).sum()
                params = list(self.params.values())
            else:
                logits = self.module(xb[0]).unsqueeze(0)  # (1, B, C)
                losses = total = cross_entropy(logits[0], yb[0])
                params = list(self.module.parameters())
            self.optimizer.zero_grad(set_to_none=True)
            total.backward()
            if grad_norms or grad_clip > 0:
                grads = [p.grad for p in params]
                norms = self._grad_norms(grads)  # (R,), before clipping
                gn_sum += norms
                if grad_clip > 0:
                    coef = (grad_clip / (norms + 1e-6)).clamp(max=1.0)
                    for g in grads:
                        g.mul_(coef.view(-1, *[1] * (g.dim() - 1)) if self.stacked else coef)
            self.optimizer.step()
            loss_sum += losses.detach() * b
            correct += (logits.detach().argmax(-1) == yb).sum(-1)
            seen += b
            steps += 1
        return loss_sum, correct, gn_sum, seen, steps

    # ------------------------------------------------------------ evaluation

    def replica_state(self, i: int) -> Optional[dict]:
        """Parameters and buffers of replica i, for functional_call (None when R = 1)."""
        if not self.stacked:
            return None
        return {**{k: v[i].detach() for k, v in self.params.items()}, **{k: v[i] for k, v in self.buffers.items()}}

    def evaluate(self, split: Split, batch_size: int, i: int, probe=None):
        return evaluate(self.module, split, batch_size, self.replica_state(i), probe)

    # ------------------------------------------------------------ state

    @property
    def lr(self) -> float:
        return self.optimizer.param_groups[0]["lr"]

    def state_dict(self) -> dict:
        model = {"params": self.params, "buffers": self.buffers} if self.stacked else self.module.state_dict()
        return {
            "model": model,
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "rng_batches": [g.get_state() for g in self.generators],
        }

    def load_state_dict(self, state: dict) -> None:
        if self.stacked:
            with torch.no_grad():
                for mine, theirs in ((self.params, state["model"]["params"]), (self.buffers, state["model"]["buffers"])):
                    for k, v in theirs.items():
                        mine[k].copy_(v)
        else:
            self.module.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        # load_state_dict takes fused/foreach from the saved groups: keep the kernels
        # make_optimizer chose here (a checkpoint may come from another version or device)
        for group in self.optimizer.param_groups:
            for flag in ("fused", "foreach"):
                group[flag] = self.optimizer.defaults.get(flag)
            if group.get("fused"):  # fused kernels keep the step count as a float32 tensor on the device
                for p in group["params"]:
                    st = self.optimizer.state.get(p, {})
                    if torch.is_tensor(st.get("step")):
                        st["step"] = st["step"].to(device=p.device, dtype=torch.float32)
        self.scheduler.load_state_dict(state["scheduler"])
        for g, s in zip(self.generators, state["rng_batches"]):
            g.set_state(s)
