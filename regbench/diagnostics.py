"""Per-epoch measurements that the literature uses to explain Dropout and BatchNorm.

A :class:`Probe` hooks the MLP of :mod:`regbench.model` during one eval-mode
pass over a split (the trainer's ``evaluate``, in chunks) and yields one
number per column of ``metrics.csv``:

``bn_var_shift/<block>``  variance shift of the block's BatchNorm (Li et al.,
                          CVPR 2019): running variance against the variance
                          its input really has at test time, >= 1, 1 = none
``preact_p15|p50|p85/<block>``  percentiles of unit 0's pre-activation (the
                          input of ``act``) over a fixed batch, the first
                          ``max_examples`` examples (Ioffe & Szegedy 2015, Fig. 1)
``dead_frac/<block>``     ReLU blocks: fraction of units that output 0 for
                          every example of the split
``weight_norm/<layer>``   Frobenius norm of each Linear's weight

Everything is read inside forward hooks from the module as it is called, so
the probe measures whichever weights and buffers the call used: a plain
module, or the template of vectorized training called through
``torch.func.functional_call`` with one replica's state (one replica per
pass; not under vmap). Hooks only launch reductions on the device; nothing is
read back to the host until the caller reads ``results()``.
"""

from __future__ import annotations

import torch
from torch import nn

PERCENTILES = (15, 50, 85)


def variance_shift(running_var: torch.Tensor, input_var: torch.Tensor, eps: float = 0.0) -> torch.Tensor:
    """Mean over units of max(a/b, b/a), a = running_var + eps, b = input_var + eps.

    ``eps`` is BatchNorm's own: the variances it would divide by. It also keeps
    a unit that is constant at test time (e.g. a dead ReLU feeding BN) at 1
    instead of inf. Symmetric, so a running variance too small counts as much
    as one too large.
    """
    a, b = running_var + eps, input_var + eps
    return torch.maximum(a / b, b / a).mean()


def percentiles(values: torch.Tensor, q=PERCENTILES) -> torch.Tensor:
    """Percentiles ``q`` (0..100) of a 1-d tensor, interpolated linearly as numpy's default.

    By hand rather than torch.quantile: positions come from the length (a host
    int), so no q tensor has to be copied to the device (a host sync on CUDA).
    """
    s = values.sort().values  # (n,)
    n = s.numel()
    out = []
    for p in q:
        pos = p / 100 * (n - 1)
        lo = int(pos)
        hi = min(lo + 1, n - 1)
        out.append(s[lo] + (pos - lo) * (s[hi] - s[lo]))
    return torch.stack(out)


def _acc_dtype(device: torch.device) -> torch.dtype:
    return torch.float32 if device.type == "mps" else torch.float64  # MPS has no float64


class Probe:
    """Hooks that collect diagnostics during one eval-mode pass over a split (possibly several chunks).

    The caller owns the mode: put the model in eval mode (and inference_mode)
    before the pass; the probe never switches it.
    """

    def __init__(self, model: nn.Module, max_examples: int = 2048):
        self.model = model
        self.max_examples = max_examples
        self.blocks: dict[str, nn.Sequential] = {}  # hidden blocks, in order
        self.linears: dict[str, nn.Linear] = {}  # hidden0, ..., head
        for name, child in model.named_children():
            if isinstance(child, nn.Sequential):
                self.blocks[name] = child
                if isinstance(getattr(child, "linear", None), nn.Linear):
                    self.linears[name] = child.linear
            elif isinstance(child, nn.Linear):
                self.linears[name] = child
        self._handles: list = []
        self._reset()

    # ------------------------------------------------------------ structure

    def _bn_blocks(self) -> list[str]:
        # Without running stats BN normalizes by the batch at test time too: no shift to measure.
        return [n for n, b in self.blocks.items()
                if isinstance(getattr(b, "bn", None), nn.BatchNorm1d) and b.bn.track_running_stats]

    def _act_blocks(self) -> list[str]:
        return [n for n, b in self.blocks.items() if hasattr(b, "act")]

    def _relu_blocks(self) -> list[str]:
        return [n for n in self._act_blocks() if isinstance(self.blocks[n].act, nn.ReLU)]

    def columns(self) -> list[str]:
        cols = [f"bn_var_shift/{n}" for n in self._bn_blocks()]
        cols += [f"preact_p{q}/{n}" for n in self._act_blocks() for q in PERCENTILES]
        cols += [f"dead_frac/{n}" for n in self._relu_blocks()]
        cols += [f"weight_norm/{n}" for n in self.linears]
        return cols

    # ------------------------------------------------------------ hooks

    def _reset(self) -> None:
        self._bn: dict[str, list] = {}  # block -> [n, sums (2, F) of d and d^2, running_var, eps]
        self._pre: dict[str, list[torch.Tensor]] = {}  # block -> slices of unit 0, the fixed batch so far
        self._pre_n: dict[str, int] = {}  # examples in those slices (host ints: shapes, no sync)
        self._alive: dict[str, torch.Tensor] = {}  # block -> (F,) bool: some example made the unit > 0
        self._norm: dict[str, torch.Tensor] = {}
        self._device: torch.device | None = None

    def _bn_hook(self, name: str):
        def hook(module: nn.BatchNorm1d, args, output):
            # Read the buffers at call time: under functional_call they are the replica's.
            x = args[0]  # (B, F): the BN input, as BN sees it at test time
            # Sums of x - running_mean: exact for any constant shift, and with a shift
            # near the mean E[d^2] - E[d]^2 does not cancel, so float32 per chunk is
            # accurate (and ~10x cheaper than float64 on CPU); chunks add up in float64.
            d = x - module.running_mean.detach()
            sums = torch.stack([d.sum(0), (d * d).sum(0)]).to(_acc_dtype(x.device))  # (2, F)
            acc = self._bn.get(name)
            if acc is None:
                self._bn[name] = acc = [0, torch.zeros_like(sums), None, module.eps]
            acc[0] += x.shape[0]
            acc[1] += sums
            acc[2] = module.running_var.detach().to(sums.dtype)  # a copy: later training steps cannot change it
            self._device = x.device
        return hook

    def _act_hook(self, name: str):
        relu = name in self._relu_blocks()

        def hook(module: nn.Module, args, output):
            x = args[0]  # (B, F) pre-activation; model.py's activations are not in-place
            room = self.max_examples - self._pre_n.get(name, 0)
            if room > 0:
                self._pre.setdefault(name, []).append(x[:room, 0].detach().float())
                self._pre_n[name] = self._pre_n.get(name, 0) + min(room, x.shape[0])
            if relu:
                alive = output.amax(0) > 0  # (F,); ReLU output is >= 0, and amax is cheaper than any
                prev = self._alive.get(name)
                self._alive[name] = alive if prev is None else prev | alive
            self._device = x.device
        return hook

    def _linear_hook(self, name: str):
        def hook(module: nn.Linear, args, output):
            # module.weight is whatever this call used (the replica's under functional_call).
            self._norm[name] = torch.linalg.vector_norm(module.weight.detach().float())
            self._device = output.device
        return hook

    def attach(self) -> None:
        self.detach()
        self._reset()
        for name in self._bn_blocks():
            self._handles.append(self.blocks[name].bn.register_forward_hook(self._bn_hook(name)))
        for name in self._act_blocks():
            self._handles.append(self.blocks[name].act.register_forward_hook(self._act_hook(name)))
        for name, linear in self.linears.items():
            self._handles.append(linear.register_forward_hook(self._linear_hook(name)))

    def detach(self) -> None:
        for h in self._handles:
            h.remove()
        self._handles = []

    # ------------------------------------------------------------ results

    def results(self) -> dict[str, torch.Tensor]:
        """Every column as a 0-dim float32 tensor on the model's device; NaN for
        what the pass did not reach (no pass since attach, max_examples = 0)."""
        device = self._device or next((p.device for p in self.model.parameters()), torch.device("cpu"))
        nan = torch.full((), float("nan"), device=device)
        out: dict[str, torch.Tensor] = {}
        for name in self._bn_blocks():
            acc = self._bn.get(name)
            if acc is None:
                out[f"bn_var_shift/{name}"] = nan
                continue
            n, sums, running_var, eps = acc
            mean_d = sums[0] / n
            input_var = (sums[1] / n - mean_d * mean_d).clamp_min(0)  # population variance over the split
            out[f"bn_var_shift/{name}"] = variance_shift(running_var, input_var, eps).float()
        for name in self._act_blocks():
            pre = self._pre.get(name)
            values = percentiles(torch.cat(pre)) if pre else nan.expand(len(PERCENTILES))
            for q, v in zip(PERCENTILES, values):
                out[f"preact_p{q}/{name}"] = v
        for name in self._relu_blocks():
            alive = self._alive.get(name)
            out[f"dead_frac/{name}"] = nan if alive is None else 1 - alive.float().mean()
        for name in self.linears:
            out[f"weight_norm/{name}"] = self._norm.get(name, nan)
        return {c: out[c] for c in self.columns()}
