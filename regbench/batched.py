"""The forward pass of R stacked copies of an MLP, layer by layer.

A fused group (or ``trainer.replicas``) keeps R copies of one ``nn.Sequential``
MLP (regbench.model) stacked along a leading replica dimension. ``vmap`` of
``functional_call`` runs them, but its batching rule for ``batch_norm`` is
slow on CPU: 1.7-2.7 ms for the forward and backward of one BatchNorm layer
at R = 25, B = 128, C = 100 (one thread), against 0.4-0.7 ms for the same
``F.batch_norm`` over the (B, R*C) view in which the R replicas' channels are
just more channels (``scripts/bench_kernels.py``, "BN layer"). So :func:`forward` walks the
MLP's layers itself: ``Linear`` as one batched matmul, ``BatchNorm1d`` as one
``F.batch_norm`` over R*C channels (each channel's statistics over the same B
examples as in a single run, running statistics and ``num_batches_tracked``
updated in place in the stacked buffers), activations elementwise (a ReLU in
place on what a Linear or BatchNorm just made), regbench's
``Dropout`` as its replica's mask. In evaluation (``training=False``, the
input (B, D) shared by all replicas) a Linear is one baddbmm against the
expanded input, bias included, and BatchNorm each replica's affine map from
its running statistics, as PyTorch's own eval-mode kernel computes it; a
diagnostics probe can be fed each replica's tensors on the way.

:func:`supported` says whether a module is made only of those parts; anything
else is left to ``vmap``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from . import kernels
from .model import ACTIVATIONS, Dropout

_ELEMENTWISE = tuple(ACTIVATIONS.values())


def supported(module: nn.Module) -> bool:
    """Whether :func:`forward` can run ``module`` (an MLP built by regbench.model)."""
    if not isinstance(module, nn.Sequential):
        return False
    for m in module.children():
        if isinstance(m, nn.Sequential):
            if not supported(m):
                return False
        elif isinstance(m, nn.BatchNorm1d):
            if not (m.affine and m.track_running_stats and m.momentum is not None):
                return False
        elif not isinstance(m, (nn.Linear, Dropout, *_ELEMENTWISE)):
            return False
    return True


def forward(module: nn.Sequential, params: dict, buffers: dict, masks: dict, x: torch.Tensor,
            training: bool, prefix: str = "", probe=None, kernel=None) -> torch.Tensor:
    """``module``'s forward for every replica at once.

    ``params``/``buffers``: {name: (R, ...)} as ``stack_module_state`` makes
    them; ``masks``: {Dropout name: (R, B, units), or a :class:`LaneMask`}
    (training only: a LaneMask right after a ReLU goes with it through
    ``kernel``'s ReLU + dropout, regbench.kernels, which gives the values the
    ReLU and the mask multiply would); ``x``:
    (R, B, D), or (B, D) shared by all replicas (evaluation). Returns (R, B, C).
    ``training`` as the module's mode: BatchNorm normalizes with the batch's
    statistics and updates its running ones, Dropout applies its mask; else
    running statistics and no dropout. ``probe`` (regbench.diagnostics.Probe
    of ``module``): given each replica's BatchNorm input, pre-activation and
    weights, with a leading replica dimension.
    """
    fresh = False
    steps = _steps(module, prefix)
    done = -1  # a Dropout the ReLU before it already applied (regbench.kernels)
    for i, (kind, key, m, reset) in enumerate(steps):
        if i == done:
            continue
        if reset:  # the first module of a block, or the one after a block: as a call per Sequential saw it
            fresh = False
        if kind is _RELU and training and probe is None and i + 1 < len(steps) and steps[i + 1][0] is _DROPOUT:
            mask = masks.get(steps[i + 1][1])
            if isinstance(mask, LaneMask) and kernel is not None and x.dim() == 3 and x.dtype is torch.float32 and x.stride(2) == 1:
                # ReLU and its Dropout in one pass each way, the same bits
                x = kernels.ReluDropout.apply(x, mask.lanes, mask.lo, mask.thr, mask.scale, kernel)
                done, fresh = i + 1, False
                continue
        role = probe.roles.get(m) if probe is not None else None  # (what it measures there, block name)
        if kind is _LINEAR:
            w, b = params[key[0]], params.get(key[1])  # (R, out, in), (R, out)
            if role is not None:
                probe.weight(role[1], w)
            if x.dim() == 2:  # a shared input: every replica's weights against it, not copied
                x = x.expand(w.shape[0], *x.shape)
            x = _Linear.apply(x, w, b)  # (R, B, out)
            fresh = True  # x is a tensor this forward made
        elif kind is _BN:
            if role is not None:
                probe.bn_input(role[1], x, buffers[f"{key}.running_mean"], buffers[f"{key}.running_var"], m.eps)
            x = _batch_norm(m, key, params, buffers, x, training)
            fresh = True
        elif kind is _DROPOUT:
            if training:
                mask = masks.get(key)
                if isinstance(mask, LaneMask):
                    mask = mask.dense()
                if mask is not None:
                    x = x * mask
            fresh = False
        elif kind is _RELU and fresh and not x._is_view():
            # in place on the tensor the Linear or BatchNorm before it made (their backward needs their
            # inputs, not their outputs): one pass over it and no new one, the same values. Not on a
            # view (training BatchNorm's transpose): autograd would copy the whole base in backward.
            # A probe keeps its copy of the input first, so evaluation's probed ReLU is in place too
            if role is not None:
                probe.preact_input(role[1], x)
            x = x.relu_()
            if role is not None:
                probe.act_output(role[1], x)
            # still a tensor this forward made: fresh stays True
        else:  # an activation: elementwise
            out = m(x)
            if role is not None:
                probe.preact(role[1], x, out)
            x = out
            fresh = False
    return x


class LaneMask:
    """A hidden Dropout position's masks as drawn: the step's lanes (R, B, H)
    of which the position holds columns [lo, hi), and each replica's
    thresholds and scales (R, H). :meth:`dense` is the (R, B, units) float
    mask :meth:`regbench.learner.MaskSampler.draw` makes; regbench.kernels' ReLU + dropout reads
    the lanes instead."""

    __slots__ = ("lanes", "lo", "hi", "thr", "scale")

    def __init__(self, lanes: torch.Tensor, lo: int, hi: int, thr: torch.Tensor, scale: torch.Tensor):
        self.lanes, self.lo, self.hi, self.thr, self.scale = lanes, lo, hi, thr, scale

    def dense(self) -> torch.Tensor:
        part = self.lanes[:, :, self.lo : self.hi]
        u = torch.lt(part, self.thr[:, None, self.lo : self.hi], out=torch.empty(part.shape, device=part.device))
        return u.mul_(self.scale[:, None, self.lo : self.hi])


_LINEAR, _BN, _DROPOUT, _RELU, _ACT = "linear", "bn", "dropout", "relu", "act"


def relu_dropout(module: nn.Sequential) -> list[str]:
    """The Dropout modules that come right after a ReLU in ``module``'s forward
    (where regbench.kernels' ReLU + dropout applies)."""
    steps = _steps(module)
    return [steps[i + 1][1] for i in range(len(steps) - 1) if steps[i][0] is _RELU and steps[i + 1][0] is _DROPOUT]


def _steps(module: nn.Sequential, prefix: str = "") -> list[tuple]:
    """``module``'s leaf modules in forward order, as (kind, key, module,
    reset): the walk :func:`forward` takes at every step, worked out once per
    module (its Python cost was 3-4% of a fused group's time). ``key`` is the
    module's name (a Linear's: its weight's and bias's); ``reset``: the first
    module of a nested Sequential, or the first after one."""
    cache = module.__dict__.setdefault("_regbench_steps", {})
    found = cache.get(prefix)
    if found is None:
        found = []
        reset = True
        for name, m in module.named_children():
            key = f"{prefix}{name}"
            if isinstance(m, nn.Sequential):
                inner = _steps(m, f"{key}.")
                if inner:
                    inner = [(inner[0][0], inner[0][1], inner[0][2], True)] + inner[1:]
                found += inner
                reset = True
                continue
            if isinstance(m, nn.Linear):
                found.append((_LINEAR, (f"{key}.weight", f"{key}.bias"), m, reset))
            elif isinstance(m, nn.BatchNorm1d):
                found.append((_BN, key, m, reset))
            elif isinstance(m, Dropout):
                found.append((_DROPOUT, key, m, reset))
            else:
                found.append((_RELU if type(m) is nn.ReLU else _ACT, key, m, reset))
            reset = False
        cache[prefix] = found
    return found


class _Linear(torch.autograd.Function):
    """``x @ w.T + b`` of each replica (x (R, B, in), w (R, out, in), b (R, out)
    or None), whose backward computes each replica's gradients in the layouts
    ``nn.Linear``'s does (``torch.mm`` picks them from the weight's strides):
    the weight's as ``g.T @ x`` (out, in), the input's as ``g @ w``. Autograd's
    own rule for ``baddbmm`` computes the weight's as ``x.T @ g`` (in, out): the
    same sums, rounded in another order, so a fused job drifted from the job
    trained alone, and for the head (out = 10) 3.3x slower (349 against 106 us at
    R = 25, B = 128; ``scripts/bench_kernels.py``, "head grad")."""

    @staticmethod
    def forward(ctx, x, w, b):
        ctx.save_for_backward(x, w)
        ctx.has_bias = b is not None
        if b is None:
            return torch.bmm(x, w.transpose(1, 2))
        return torch.baddbmm(b.unsqueeze(1), x, w.transpose(1, 2))

    @staticmethod
    def backward(ctx, g):
        x, w = ctx.saved_tensors
        g = g.contiguous()  # the loss's gradient comes (C, B)-major (learner.cross_entropy); a single run's head gets it row-major
        gx = torch.bmm(g, w) if ctx.needs_input_grad[0] else None
        gw = torch.bmm(g.transpose(1, 2), x) if ctx.needs_input_grad[1] else None
        gb = g.sum(1) if ctx.has_bias and ctx.needs_input_grad[2] else None
        return gx, gw, gb


def _batch_norm(m: nn.BatchNorm1d, key: str, params: dict, buffers: dict, x: torch.Tensor, training: bool) -> torch.Tensor:
    running_mean, running_var = buffers[f"{key}.running_mean"], buffers[f"{key}.running_var"]  # (R, C)
    if not training:  # each replica's affine map, as PyTorch's eval-mode kernel computes it (no copies of x)
        alpha = params[f"{key}.weight"] / torch.sqrt(running_var + m.eps)
        beta = params[f"{key}.bias"] - running_mean * alpha
        return torch.addcmul(beta.unsqueeze(1), x, alpha.unsqueeze(1))  # (R, B, C); a shared (B, C) x broadcasts
    if x.dim() == 2:  # a shared input reaches BN only through a Linear first; still, be exact
        x = x.expand(params[f"{key}.weight"].shape[0], *x.shape)
    R, B, C = x.shape
    flat = x.transpose(0, 1).reshape(B, R * C)  # the replicas' channels side by side
    tracked = buffers.get(f"{key}.num_batches_tracked")
    if tracked is not None:
        tracked.add_(1)
    y = F.batch_norm(flat, running_mean.view(R * C), running_var.view(R * C), params[f"{key}.weight"].reshape(R * C),
                     params[f"{key}.bias"].reshape(R * C), training, m.momentum, m.eps)
    return y.view(B, R, C).transpose(0, 1)
