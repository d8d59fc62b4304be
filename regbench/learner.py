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
independent optimizers (torch's fused kernels, called by regbench.optim
without torch.optim, whose first use imports torch._dynamo).

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

from . import batched, kernels
from .data import Split
from .model import Dropout, build_mlp, count_parameters, layer_rates
from .optim import make_optimizer, make_scheduler  # noqa: F401  (make_optimizer: also scripts/bench.py's)


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


def predictions(logits: torch.Tensor) -> torch.Tensor:
    """The predicted class: ``logits.argmax(-1)``, the same index (the first
    maximum; NaN wins, as in argmax), taken as ``max``'s indices, which on CPU
    over a short last dimension (C = 10) take half argmax's time (27 against
    13 us for 13 x 128 x 10, one thread)."""
    return logits.max(-1).indices


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
            preds.append(predictions(logits))
        pred = torch.cat(preds)
        return loss_sum / len(split), (pred == split.y).float().mean(), pred
    finally:
        if probe is not None:
            probe.detach()
        module.train(was_training)


# An evaluation pass of several replicas at once holds a few activations of
# (replicas, examples, widest layer) float32 values; each is kept under this
# many bytes. On a CPU the matmuls and the elementwise ops of these small MLPs
# run fastest on activations that stay in a core's cache: measured on one
# thread at R=25, widths 100 (the fit, val and test passes of one epoch), a
# budget of 1-2 MiB took 2.2-3.8 ms per seed-epoch, 8 MiB 3.2-6.3 ms and
# all 25 replicas x 3200 examples at once (31 MiB) slower than one replica at
# a time. On a GPU only memory bounds it: 256 MiB a tensor (about 1 GiB at the
# pass's peak) evaluates a 500-replica group, 8192 examples x width 100, in 7
# passes of 80 replicas instead of one pass of 1.6 GB a tensor.
EVAL_PASS_BYTES = {"cpu": 1 << 20}
EVAL_PASS_BYTES_OTHER = 256 << 20
MIN_PASS_EXAMPLES = 128  # where one replica's chunk is over the budget: fewer examples a pass, not fewer than these


def eval_pass_shape(replicas: int, examples: int, row_bytes: int, device) -> tuple[int, int]:
    """(replicas, examples) of one evaluation pass over chunks of ``examples``
    (trainer.eval_batch_size, or the whole split when smaller): as many
    replicas as the budget holds; where one replica's chunk alone is over it,
    one replica and fewer examples. ``row_bytes``: one example's widest activation."""
    budget = EVAL_PASS_BYTES.get(torch.device(device).type, EVAL_PASS_BYTES_OTHER)
    fit = budget // (examples * row_bytes)
    if fit >= 1:
        return min(replicas, fit), examples
    return 1, min(examples, max(MIN_PASS_EXAMPLES, budget // row_bytes))


def _stream_seed(seed: int, salt: int) -> int:
    """A seed for one of a job's random streams, independent of the batch-order stream."""
    return (int(seed) * 0x9E3779B97F4A7C15 + salt) % (2**63 - 1)


HIDDEN_MASKS, INPUT_MASKS = 0x6D61736B, 0x696E7075  # salts of the two mask streams


def dropout_positions(module: nn.Module, n_features: int) -> list[tuple[str, int]]:
    """(name, units) of each Dropout in ``module``, in forward order."""
    found, hooks = [], []
    for name, m in module.named_modules():
        if isinstance(m, Dropout):
            hooks.append(m.register_forward_pre_hook(lambda mod, args, name=name: found.append((name, args[0].shape[-1]))))
    was = module.training
    module.eval()
    try:
        with torch.no_grad():
            module(torch.zeros(2, n_features, device=next(module.parameters()).device))
    finally:
        module.train(was)
        for h in hooks:
            h.remove()
    return found


LANE_LEVELS = 2**16  # a dropout mask unit is one 16-bit lane of a random 64-bit word
_ALWAYS = -(2**15)  # the lowest lane value: below every threshold (a unit that is never dropped)


def lane_thresholds(keep: torch.Tensor) -> torch.Tensor:
    """int16 thresholds for keep probabilities: a uniform 16-bit lane ``v``
    (as int16) keeps its unit when ``v < t``, which it does with probability
    round(keep * 2**16) / 2**16, within 2**-17 (7.6e-6) of ``keep`` (a rate p
    below 2**-17 drops with probability 2**-16, the least a lane can); keep = 1
    (a unit not drawn) gives 2**15 - 1, which the lane filled with -2**15 is below."""
    levels = torch.round(keep.double() * LANE_LEVELS).clamp(max=LANE_LEVELS - 1)
    return (levels - 2**15).to(torch.int16)


def _draw_lanes(n: int, generator: torch.Generator, device) -> torch.Tensor:
    """``n`` uniform 16-bit lanes (int16) from 64-bit words of ``generator``:
    4 units per word, against one 32-bit draw per unit for ``torch.rand``
    (1.0 against 2.3 ns a unit with the masks made, ``scripts/bench_kernels.py``, "draw")."""
    words = torch.empty(-(-n // 4), dtype=torch.int64, device=device)
    words.random_(-(2**63), None, generator=generator)  # the full 64-bit range: every bit uniform
    return words.view(torch.int16)[:n]


class MaskSampler:
    """Each replica's dropout masks, drawn outside vmap from its job's own streams.

    Replica r draws, per step, ``B * units`` uniform 16-bit lanes (4 per random
    64-bit word) from its hidden-layer generator covering exactly the hidden
    Dropout positions where *its* rate is > 0, and ``B * n_features`` from its
    input generator when its input dropout is > 0: what the same job draws when
    it trains alone. So a job's masks depend only on its seed and config, never
    on the group it trains in. Positions where a replica's rate is 0 keep every
    unit (mask 1). A unit is kept when its lane is below the rate's threshold
    (:func:`lane_thresholds`: probability 1-p to within 2**-17) and a kept unit
    is scaled by 1/(1-p), as ``nn.Dropout`` does.
    """

    def __init__(self, positions: list[tuple[str, int]], rates: list[dict[str, float]], seeds: list[int], device):
        self.device = torch.device(device)
        self.names = [n for n, _ in positions]
        self.units = [u for _, u in positions]
        self.R = len(seeds)
        self.inputs = [n for n in self.names if n == "input_dropout"]
        self.hidden = [n for n in self.names if n != "input_dropout"]
        width = dict(positions)
        self.h_total = sum(width[n] for n in self.hidden)
        self.in_units = width.get("input_dropout", 0)
        gen = lambda seed, salt: torch.Generator(self.device).manual_seed(_stream_seed(seed, salt))
        self.generators = {"hidden": [gen(s, HIDDEN_MASKS) for s in seeds], "input": [gen(s, INPUT_MASKS) for s in seeds]}
        # hidden columns each replica draws (its own positions with p > 0), and keep probabilities
        offsets, o = {}, 0
        for n in self.hidden:
            offsets[n] = (o, o + width[n])
            o += width[n]
        self.h_cols: list[Optional[torch.Tensor]] = []
        keep_h = torch.ones(self.R, self.h_total)
        keep_in = torch.ones(self.R, max(1, self.in_units))
        self.draw_in = []
        for r, rate in enumerate(rates):
            own = [n for n in self.hidden if rate.get(n, 0.0) > 0]
            for n in own:
                keep_h[r, offsets[n][0] : offsets[n][1]] = 1.0 - rate[n]
            if own and len(own) == len(self.hidden):
                self.h_cols.append(None)  # all columns: drawn straight into its row
            elif own:
                self.h_cols.append(torch.cat([torch.arange(*offsets[n]) for n in own]).to(self.device))
            else:
                self.h_cols.append(torch.empty(0, dtype=torch.long))
            self.draw_in.append(rate.get("input_dropout", 0.0) > 0)
            if self.draw_in[-1]:
                keep_in[r] = 1.0 - rate["input_dropout"]
        self.thr_h, self.scale_h = lane_thresholds(keep_h).to(self.device).unsqueeze(1), (1.0 / keep_h).to(self.device).unsqueeze(1)
        self.thr_in, self.scale_in = lane_thresholds(keep_in).to(self.device).unsqueeze(1), (1.0 / keep_in).to(self.device).unsqueeze(1)
        self.offsets = offsets
        self.thr_rows, self.scale_rows = self.thr_h[:, 0].contiguous(), self.scale_h[:, 0].contiguous()  # (R, h_total)

    def _lanes(self, b: int, units: int, cols: list, generators: list) -> torch.Tensor:
        """(R, b, units) int16 lanes: replica r's own draws in its columns
        (``cols[r]``: None = all, an index tensor, or False = none), -2**15 elsewhere."""
        n = b * units
        words = torch.empty(self.R, -(-n // 4), dtype=torch.int64, device=self.device)
        lanes = words.view(torch.int16)[:, :n]
        for r, (c, g) in enumerate(zip(cols, generators)):
            if c is None:  # all its columns: drawn straight into its row
                words[r].random_(-(2**63), None, generator=g)
            else:
                lanes[r].fill_(_ALWAYS)  # columns it does not draw keep every unit
                if c is not False and len(c):
                    lanes[r].view(b, units)[:, c] = _draw_lanes(b * len(c), g, self.device).view(b, len(c))
        return lanes.view(self.R, b, units)

    def draw(self, b: int, lanes: bool = False) -> dict:
        """{dropout module name: (R, b, units) mask} for one step of batch size b.
        Each mask is its own contiguous tensor, as the elementwise kernels are
        faster on contiguous inputs. ``lanes``: the hidden positions' masks as
        :class:`regbench.batched.LaneMask` (the draws, not yet compared), for regbench's ReLU +
        dropout kernel (regbench.kernels); the same draws either way."""
        masks = {}
        if self.hidden and lanes:
            drawn = self._lanes(b, self.h_total, self.h_cols, self.generators["hidden"]).contiguous()
            for n in self.hidden:
                masks[n] = batched.LaneMask(drawn, *self.offsets[n], self.thr_rows, self.scale_rows)
        elif self.hidden:
            lanes = self._lanes(b, self.h_total, self.h_cols, self.generators["hidden"])
            # two passes a position: (lane < threshold) as 0/1 floats into its own tensor, times 1/keep
            for n in self.hidden:
                lo, hi = self.offsets[n]
                part = lanes[:, :, lo:hi]
                u = torch.lt(part, self.thr_h[:, :, lo:hi], out=torch.empty(part.shape, device=self.device))
                masks[n] = u.mul_(self.scale_h[:, :, lo:hi])
        if self.inputs:
            lanes = self._lanes(b, self.in_units, [None if d else False for d in self.draw_in], self.generators["input"])
            u = torch.lt(lanes, self.thr_in, out=torch.empty(lanes.shape, device=self.device))
            masks["input_dropout"] = u.mul_(self.scale_in)
        return masks

    def get_state(self) -> list:
        return [[g.get_state() for g in self.generators[k]] for k in ("hidden", "input")]

    def set_state(self, states: list) -> None:
        for k, st in zip(("hidden", "input"), states):
            for g, s in zip(self.generators[k], st):
                g.set_state(s)


def replica_rates(model_cfg) -> dict[str, float]:
    """{Dropout module name: p} of one job's model (positions with p > 0 only)."""
    out = {f"hidden{i}.dropout": p for i, p in enumerate(layer_rates(model_cfg)) if p > 0 and "dropout" in model_cfg.order}
    if model_cfg.input_dropout > 0:
        out["input_dropout"] = float(model_cfg.input_dropout)
    return out


def union_model(model_cfgs: list):
    """A model config with a Dropout wherever any of ``model_cfgs`` has one (the
    rate in it is not used: the masks carry each replica's own)."""
    from omegaconf import OmegaConf

    first = model_cfgs[0]
    if len(model_cfgs) == 1:
        return first
    tmpl = OmegaConf.create(OmegaConf.to_container(first, resolve=True))
    rates = [layer_rates(c) for c in model_cfgs]
    tmpl.dropout_layers = [max(r[i] for r in rates) for i in range(len(first.widths))]
    tmpl.input_dropout = max(float(c.input_dropout) for c in model_cfgs)
    return tmpl


class Learner:
    """R = len(seeds) models trained in lockstep. ``model_cfg`` is one config for
    all replicas, or a list of one per replica (a fused group: the same shapes,
    the dropout rates may differ). ``labels`` (R, N) optionally gives each replica
    its own training labels (label noise per job)."""

    def __init__(self, model_cfg, optim_cfg, epochs: int, n_features: int, n_classes: int, seeds: list[int], device,
                 labels: Optional[torch.Tensor] = None):
        self.seeds = list(seeds)
        self.device = torch.device(device)
        cfgs = list(model_cfg) if isinstance(model_cfg, (list, tuple)) else [model_cfg] * len(self.seeds)
        models = []
        for seed, c in zip(self.seeds, cfgs):  # the same initialization as a single run with that seed
            torch.manual_seed(seed)
            models.append(build_mlp(c, n_features, n_classes).to(self.device))
        if len(models) == 1:
            self.module = models[0]  # R = 1: the model
        else:  # R > 1: the template called through functional_call, with a Dropout wherever a replica has one
            self.module = build_mlp(union_model(cfgs), n_features, n_classes).to(self.device)
        self.module.train()
        self.has_bn = any(isinstance(m, nn.BatchNorm1d) for m in self.module.modules())
        self.n_params = count_parameters(self.module)
        self.stacked = len(models) > 1
        self.layerwise = False
        self.labels = labels
        if self.stacked:
            params, buffers = stack_module_state(models)  # {name: (R, ...)}
            self.params = {k: v.detach().requires_grad_() for k, v in params.items()}
            self.buffers = {k: v for k, v in buffers.items() if not k.endswith(".mask")}
            self._forward = vmap(self._call, randomness="error")  # in_dims=0 for every leaf; masks come from outside
            # regbench's MLPs: layer by layer (batched.py: BatchNorm as one op over R*C channels, not vmap's rule)
            self.layerwise = batched.supported(self.module)
            trainable = list(self.params.values())
        else:
            trainable = list(self.module.parameters())
        self.param_names = [n for n, _ in self.module.named_parameters()]
        optims = list(optim_cfg) if isinstance(optim_cfg, (list, tuple)) else [optim_cfg]
        hparams = [(float(o.lr), float(o.weight_decay)) for o in optims]
        # a fused group whose jobs differ in lr / weight decay: one (lr, decay) per replica
        replicas = hparams if len(set(hparams)) > 1 else None
        if replicas is not None and (not self.stacked or len(replicas) != len(self.seeds)):
            raise ValueError("per-replica optim.lr / optim.weight_decay need one optimizer config per replica")
        self.optimizer = make_optimizer(optims[0], trainable, replicas=replicas, stacked=self.stacked)
        self.scheduler = make_scheduler(optims[0], self.optimizer, epochs)
        self.generators = [torch.Generator().manual_seed(s) for s in self.seeds]  # batch order per seed
        self.masks = MaskSampler(dropout_positions(self.module, n_features), [replica_rates(c) for c in cfgs], self.seeds, self.device)
        self.dropouts = {n: m for n, m in self.module.named_modules() if isinstance(m, Dropout)}
        # regbench's C++ ReLU + dropout (the same bits as PyTorch's ops), where a group's layer walk can use it
        self.kernel = None
        if self.layerwise and self.device.type == "cpu" and self.masks.hidden and batched.relu_dropout(self.module):
            self.kernel = kernels.get()
        widest = max([n_features, n_classes] + [m.out_features for m in self.module.modules() if isinstance(m, nn.Linear)])
        self.row_bytes = 4 * widest  # one example's widest activation: evaluate_replicas sizes its passes by it

    # ------------------------------------------------------------ training

    def _call(self, params, buffers, masks, xb):
        return functional_call(self.module, (params, buffers, masks), (xb,), tie_weights=False)  # (B, C); an MLP ties none

    def _grad_norms(self, grads: list[torch.Tensor]) -> torch.Tensor:
        """Global L2 norm of each replica's gradient: (R,)."""
        if not self.stacked:
            return torch.nn.utils.get_total_norm(grads).reshape(1)
        # as get_total_norm: each tensor's norms, then the norm of those (no copy of all gradients into one tensor)
        return torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g.flatten(1), dim=1) for g in grads]), dim=0)

    def train_epoch(self, train: Split, batch_size: int, grad_clip: float, alive: torch.Tensor, grad_norms: bool = True):
        """One pass over a seeded permutation of the training set, per replica.

        ``alive`` (R,) bool masks replicas that diverged: their loss no longer
        reaches the gradients. Returns (loss_sum, correct, grad_norm_sum) as (R,)
        device tensors (grad norms only measured when asked for or clipping),
        and the examples seen and steps taken.
        """
        n, R = len(train), len(self.seeds)
        labels = self.labels if self.labels is not None else train.y.expand(R, -1)  # (R, N)
        perms = torch.stack([torch.randperm(n, generator=g) for g in self.generators])  # (R, N), on the host: the seeded order
        if self.device.type == "cuda":  # pinned, so the copy does not wait for the GPU (no host sync in the epoch)
            perms = perms.pin_memory().to(self.device, non_blocking=True)
        else:
            perms = perms.to(self.device)
        zeros = lambda: torch.zeros(R, device=self.device)
        loss_sum, correct, gn_sum = zeros(), zeros(), zeros()
        seen = steps = 0
        for start in range(0, n, batch_size):
            idx = perms[:, start : start + batch_size]  # (R, B)
            b = idx.shape[1]
            if self.has_bn and b < 2:  # BatchNorm cannot normalize a single example
                continue
            # (R, B, D), (R, B): the same rows as train.x[idx] and labels[rows, idx], 2.7x faster (80 against 30 us at R = 12, B = 128)
            xb = torch.index_select(train.x, 0, idx.reshape(-1)).view(R, b, *train.x.shape[1:])
            yb = torch.gather(labels, 1, idx)
            masks = self.masks.draw(b, lanes=self.kernel is not None)  # {dropout name: (R, B, units)}, from each replica's own stream
            if self.stacked:
                if self.layerwise:
                    logits = batched.forward(self.module, self.params, self.buffers, masks, xb, training=True,
                                             kernel=self.kernel)  # (R, B, C)
                else:
                    logits = self._forward(self.params, self.buffers, {f"{k}.mask": v for k, v in masks.items()}, xb)
                # the loss outside vmap: one kernel for all replicas, not a batching rule per op
                losses = cross_entropy(logits.flatten(0, 1), yb.flatten(), reduction="none").view(R, b).mean(1)
                total = torch.where(alive, losses, torch.zeros_like(losses)).sum()
                params = list(self.params.values())
            else:
                for k, v in masks.items():
                    self.dropouts[k].mask = v[0]
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
            correct += (predictions(logits.detach()) == yb).sum(-1)
            seen += b
            steps += 1
        for m in self.dropouts.values():
            m.mask = None
        return loss_sum, correct, gn_sum, seen, steps

    # ------------------------------------------------------------ evaluation

    def replica_state(self, i: int) -> Optional[dict]:
        """Parameters and buffers of replica i, for functional_call (None when R = 1)."""
        if not self.stacked:
            return None
        return {**{k: v[i].detach() for k, v in self.params.items()}, **{k: v[i] for k, v in self.buffers.items()}}

    def evaluate(self, split: Split, batch_size: int, i: int, probe=None):
        """Replica i alone (R = 1: the plain module)."""
        return evaluate(self.module, split, batch_size, self.replica_state(i), probe)

    @torch.inference_mode()
    def evaluate_replicas(self, x: torch.Tensor, y: torch.Tensor, batch_size: int, replicas: list[int], probe=None,
                          masked: tuple = ()):
        """Replicas ``replicas`` evaluated at once, in eval mode (R > 1 and ``self.layerwise``).

        ``x`` (N, D) is shared by all; ``y`` is (N,), or (r, N) with one row of
        labels per replica. Passes hold at most ``batch_size`` examples and are
        sized by :func:`eval_pass_shape`; each runs regbench.batched's forward
        (not vmap(functional_call), 1.6x slower without BatchNorm and 2.2x with
        it here: ``scripts/bench_kernels.py``, eval). ``masked``: pairs (labels, mask), each
        (r, N), whose counts of correct predictions among the masked examples
        are returned too (the noisy-label metrics). ``probe`` is fed each
        replica's tensors. Returns device tensors: mean loss (r,), accuracy
        (r,), [count (r,) per pair], {probe column: (r,)}.
        """
        r, n = len(replicas), len(x)
        if replicas == list(range(len(self.seeds))):
            params, buffers = self.params, self.buffers
        else:  # the live replicas only: a copy of their (small) parameters
            idx = torch.tensor(replicas, device=self.device)
            params, buffers = ({k: v[idx] for k, v in d.items()} for d in (self.params, self.buffers))
        r_pass, n_pass = eval_pass_shape(r, min(batch_size, n), self.row_bytes, self.device)
        loss = torch.zeros(r, device=self.device)
        correct = torch.zeros(r, dtype=torch.long, device=self.device)
        counts = [torch.zeros(r, dtype=torch.long, device=self.device) for _ in masked]
        if probe is not None:
            probe.reset()
        for r0 in range(0, r, r_pass):
            rs = slice(r0, r0 + r_pass)
            p, b = {k: v[rs].detach() for k, v in params.items()}, {k: v[rs] for k, v in buffers.items()}
            if probe is not None and r0 > 0:
                probe.next_chunk()
            rp = min(r0 + r_pass, r) - r0
            for start in range(0, n, n_pass):
                cols = slice(start, start + n_pass)
                logits = batched.forward(self.module, p, b, {}, x[cols], training=False, probe=probe)  # (r', B, C)
                nb = logits.shape[1]
                yb = y[cols].expand(rp, nb) if y.dim() == 1 else y[rs, cols]  # (r', B)
                loss[rs] += cross_entropy(logits.flatten(0, 1), yb.flatten(), reduction="none").view(rp, nb).sum(1)
                pred = predictions(logits)  # (r', B)
                correct[rs] += (pred == yb).sum(1)
                for count, (labels, mask) in zip(counts, masked):
                    count[rs] += ((pred == labels[rs, cols]) & mask[rs, cols]).sum(1)
        found = probe.results() if probe is not None else {}  # every chunk's at once
        return loss / n, correct.float() / n, counts, found

    # ------------------------------------------------------------ state

    @property
    def lr(self) -> float:
        return self.optimizer.param_groups[0]["lr"]

    @property
    def lrs(self) -> list[float]:
        """Each replica's learning rate now."""
        own = getattr(self.optimizer, "replica_lrs", None)
        return list(own) if own is not None else [self.lr] * len(self.seeds)

    def _stacked(self) -> tuple[dict, dict]:
        """Parameters and buffers as {name: (R, ...)} (views of the model's own when R = 1)."""
        if self.stacked:
            return self.params, self.buffers
        return ({n: p.unsqueeze(0) for n, p in self.module.named_parameters()},
                {n: b.unsqueeze(0) for n, b in self.module.named_buffers()})

    def state_dict(self, replicas: Optional[list[int]] = None) -> dict:
        """The state of the replicas ``replicas`` (default all) in one format
        whatever the group: every per-replica tensor has a leading replica
        dimension, the optimizer state is keyed by parameter name. So a job's
        checkpoint does not depend on the group it trained in."""
        idx = list(range(len(self.seeds))) if replicas is None else list(replicas)
        sel = lambda t: t.detach()[idx].clone()
        params, buffers = self._stacked()
        opt = self.optimizer.state_dict()
        shapes = [p.shape for p in (self.params.values() if self.stacked else self.module.parameters())]
        ostate = {}
        for i, name in enumerate(self.param_names):
            st = opt["state"].get(i)
            if st is None:
                continue
            per = {k: v for k, v in st.items() if torch.is_tensor(v) and v.shape == shapes[i]}
            ostate[name] = {
                "replica": {k: sel(v if self.stacked else v.unsqueeze(0)) for k, v in per.items()},
                "shared": {k: v for k, v in st.items() if k not in per},
            }
        mask_states = self.masks.get_state()
        return {
            "format": 2,
            "model": {"params": {k: sel(v) for k, v in params.items()}, "buffers": {k: sel(v) for k, v in buffers.items()}},
            "optimizer": {"state": ostate, "param_groups": opt["param_groups"]},
            "scheduler": self.scheduler.state_dict(),
            "replica_lrs": [self.lrs[i] for i in idx],  # each job's own (a group's jobs may differ in optim.lr)
            "rng_batches": [self.generators[i].get_state() for i in idx],
            "rng_masks": [[st[i] for i in idx] for st in mask_states],
        }

    def load_state_dict(self, parts) -> None:
        """Load one state (all replicas) or a list of states whose replicas, in
        order, make up this learner's (the jobs of a group, each from its own
        checkpoint; they must have stopped at the same epoch)."""
        parts = [parts] if isinstance(parts, dict) else list(parts)
        if any(p.get("format") != 2 for p in parts):
            raise ValueError("a checkpoint of another format")
        params, buffers = self._stacked()
        with torch.no_grad():
            for mine, key in ((params, "params"), (buffers, "buffers")):
                for k, v in mine.items():
                    joined = torch.cat([p["model"][key][k].to(v.device) for p in parts])
                    if joined.shape != v.shape:
                        raise ValueError(f"{k}: shape {tuple(joined.shape)} in the checkpoint, {tuple(v.shape)} here")
                    v.copy_(joined)
        state = {}
        for i, name in enumerate(self.param_names):
            per = [p["optimizer"]["state"].get(name) for p in parts]
            if all(x is None for x in per):
                continue
            if any(x is None for x in per):
                raise ValueError("optimizer states of different ages")
            st = dict(per[0]["shared"])
            for k in per[0]["replica"]:
                joined = torch.cat([x["replica"][k] for x in per])
                st[k] = joined if self.stacked else joined[0]
            state[i] = st
        self.optimizer.load_state_dict({"state": state, "param_groups": parts[0]["optimizer"]["param_groups"]})
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
        self.scheduler.load_state_dict(parts[0]["scheduler"])
        if getattr(self.optimizer, "replica_lrs", None) is not None:
            # each job's learning rate from its own checkpoint (older ones: their group's lr)
            self.optimizer.replica_lrs = [lr for p in parts for lr in
                                          p.get("replica_lrs", [p["optimizer"]["param_groups"][0]["lr"]] * len(p["rng_batches"]))]
            self.optimizer.param_groups[0]["lr"] = self.optimizer.replica_lrs[0]
        batches = [s for p in parts for s in p["rng_batches"]]
        masks = [[s for p in parts for s in p["rng_masks"][k]] for k in range(2)]
        if len(batches) != len(self.generators):
            raise ValueError("another number of replicas")
        for g, s in zip(self.generators, batches):
            g.set_state(s)
        self.masks.set_state(masks)


def module_state(state: dict, replica: int = 0) -> dict:
    """A ``state_dict`` for the MLP of one replica from a learner state (a checkpoint's ``learner``)."""
    model = state["model"]
    return {**{k: v[replica] for k, v in model["params"].items()}, **{k: v[replica] for k, v in model["buffers"].items()}}
