"""The micro-measurements docs/speed.md quotes, in one process on
one thread, best of interleaved rounds (noise only ever adds time):

  step      one training step of a 25-replica MLP (40-100-100-10, batch 128,
            dropout masks given): vmap(functional_call) as regbench trains,
            against a hand-written batched MLP (baddbmm; BatchNorm by hand)
  eval      an eval-mode forward of the 25 replicas on 3200 shared examples,
            in passes of 3 replicas x 3200 examples (about what
            Learner.evaluate_replicas does on a CPU): vmap(functional_call)
            with in_dims None for x, against regbench.batched.forward
            (training=False: baddbmm, BatchNorm as each replica's affine map)
  BN layer  one BatchNorm layer, forward and backward, of 25 replicas: vmap's
            batching rule against F.batch_norm over the (B, R*C) view
            (regbench.batched, which a fused group trains with)
  head grad the head's (100 -> 10) weight gradient of 25 replicas: x.T @ g
            (in, out), as autograd's rule for baddbmm takes it, against
            g.T @ x (out, in), as nn.Linear's backward and regbench.batched
            take it
  masks     turning (R, B, 200) uniforms into scaled masks: a `where` per layer
            over strided slices (before) against one in-place compare and
            multiply (regbench.learner.MaskSampler now)
  draw      ns per unit of a step's masks, drawn from each replica's own
            generator: uniform floats compared with 1-p (before) against
            regbench.learner.MaskSampler, which compares 16-bit lanes of
            random 64-bit words with an int16 threshold (4 units per word)
  relu+drop a hidden layer's ReLU and dropout, forward and backward, of 25
            replicas (BatchNorm's (B, R, C) layout with --bn): PyTorch's ops as
            regbench.batched ran them (ReLU, the mask's compare and scale, the
            multiply; the mask multiply and threshold_backward) against
            regbench's C++ kernel (regbench/kernels.py; left out where it is
            not built: python -m regbench.kernels --build)

    python scripts/bench_kernels.py [--bn] [--rounds 3]
"""

from __future__ import annotations

import argparse
import time

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call, stack_module_state, vmap

R, B, D, H, C = 25, 128, 40, 100, 10


def best(fn, reps: int) -> float:
    for _ in range(5):
        fn()
    t = time.perf_counter()
    for _ in range(reps):
        fn()
    return (time.perf_counter() - t) / reps


def step_loops(bn: bool):
    def mk():
        parts = [nn.Linear(D, H)] + ([nn.BatchNorm1d(H)] if bn else []) + [nn.ReLU(), nn.Linear(H, H)]
        parts += ([nn.BatchNorm1d(H)] if bn else []) + [nn.ReLU(), nn.Linear(H, C)]
        return nn.Sequential(*parts)

    params, buffers = stack_module_state([mk() for _ in range(R)])
    params = {k: v.detach().requires_grad_() for k, v in params.items()}
    template = mk()
    forward = vmap(lambda p, b, x: functional_call(template, (p, b), (x,)))
    x, y = torch.randn(R, B, D), torch.randint(0, C, (R, B))
    m1, m2 = ((torch.rand(R, B, H) < 0.7).float() / 0.7 for _ in range(2))
    opt = torch.optim.Adam(list(params.values()), lr=1e-3, fused=True)

    def loss_of(logits):
        return F.cross_entropy(logits.flatten(0, 1), y.flatten(), reduction="none").view(R, B).mean(1).sum()

    def vmapped():
        opt.zero_grad()
        loss_of(forward(params, buffers, x)).backward()
        opt.step()

    P = {k: v.detach().clone().requires_grad_() for k, v in params.items()}
    running = {k: v.clone() for k, v in buffers.items()}
    opt2 = torch.optim.Adam(list(P.values()), lr=1e-3, fused=True)
    names = [n for n, m in template.named_children() if isinstance(m, nn.Linear)]
    bns = [n for n, m in template.named_children() if isinstance(m, nn.BatchNorm1d)]

    def batch_norm(h, name):
        mean, var = h.mean(1, keepdim=True), h.var(1, unbiased=False, keepdim=True)
        with torch.no_grad():
            running[f"{name}.running_mean"].mul_(0.9).add_(mean.squeeze(1), alpha=0.1)
            running[f"{name}.running_var"].mul_(0.9).add_(var.squeeze(1) * (B / (B - 1)), alpha=0.1)
        return (h - mean) * torch.rsqrt(var + 1e-5) * P[f"{name}.weight"].unsqueeze(1) + P[f"{name}.bias"].unsqueeze(1)

    def by_hand():
        h = x
        for i, name in enumerate(names):
            h = torch.baddbmm(P[f"{name}.bias"].unsqueeze(1), h, P[f"{name}.weight"].transpose(1, 2))
            if i < 2:
                if bn:
                    h = batch_norm(h, bns[i])
                h = F.relu(h) * (m1, m2)[i]
        opt2.zero_grad()
        loss_of(h).backward()
        opt2.step()

    return vmapped, by_hand


def eval_loops(bn: bool):
    from omegaconf import OmegaConf

    from regbench import batched
    from regbench.config import ModelConfig, OptimConfig
    from regbench.learner import Learner

    cfg = OmegaConf.structured(ModelConfig(widths=[H, H], batchnorm=bn))
    optim = OmegaConf.structured(OptimConfig(name="adam"))
    learner = Learner(cfg, optim, 1, D, C, list(range(R)), "cpu")
    with torch.no_grad():  # BatchNorm's running statistics as after training, different per replica
        for k, v in learner.buffers.items():
            if k.endswith("running_mean") or k.endswith("running_var"):
                v.uniform_(0.5, 1.5)
    template = learner.module.eval()
    forward = vmap(lambda p, b, x: functional_call(template, (p, b), (x,)), in_dims=(0, 0, None))
    x = torch.randn(3200, D)
    per = 3

    def vmapped():
        with torch.inference_mode():
            for r0 in range(0, R, per):
                forward({k: v[r0 : r0 + per].detach() for k, v in learner.params.items()},
                        {k: v[r0 : r0 + per] for k, v in learner.buffers.items()}, x)

    def by_hand():
        with torch.inference_mode():
            for r0 in range(0, R, per):
                batched.forward(template, {k: v[r0 : r0 + per].detach() for k, v in learner.params.items()},
                                {k: v[r0 : r0 + per] for k, v in learner.buffers.items()}, {}, x, training=False)

    return vmapped, by_hand


def bn_layer_loops():
    """One BatchNorm layer in training mode, forward and backward, for R replicas
    of (B, H): vmap's batching rule for batch_norm against F.batch_norm over the
    (B, R*H) view (regbench.batched: the replicas' channels side by side)."""
    x = torch.randn(R, B, H, requires_grad=True)
    g = torch.randn(R, B, H)
    w, b = torch.randn(R, H, requires_grad=True), torch.randn(R, H, requires_grad=True)
    rm, rv = torch.zeros(R, H), torch.ones(R, H)

    def vmapped():
        vmap(lambda x, w, b, rm, rv: F.batch_norm(x, rm, rv, w, b, True, 0.1, 1e-5))(x, w, b, rm, rv).backward(g)

    def as_channels():
        flat = x.transpose(0, 1).reshape(B, R * H)
        y = F.batch_norm(flat, rm.view(-1), rv.view(-1), w.view(-1), b.view(-1), True, 0.1, 1e-5)
        y.view(B, R, H).transpose(0, 1).backward(g)

    return vmapped, as_channels


def mask_loops():
    u = torch.rand(R, B, 2 * H)
    keep = torch.full((R, 1, 2 * H), 0.7)
    scale = 1 / keep
    halves = ((0, H), (H, 2 * H))

    def where_per_layer():
        return [torch.where(u[:, :, lo:hi] < keep[:, :, lo:hi], scale[:, :, lo:hi], 0.0) for lo, hi in halves]

    def in_place():
        v = torch.empty_like(u)
        torch.lt(u, keep, out=v)
        v.mul_(scale)
        return [v[:, :, lo:hi].contiguous() for lo, hi in halves]

    return where_per_layer, in_place


def head_grad_loops():
    x, g = torch.randn(R, B, H), torch.randn(R, B, C)
    return (lambda: torch.bmm(x.transpose(1, 2), g)), (lambda: torch.bmm(g.transpose(1, 2), x))


def uniform_loops():
    from regbench.learner import MaskSampler

    gens = [torch.Generator().manual_seed(i) for i in range(R)]
    keep = torch.full((R, 1, 2 * H), 0.7)
    scale = 1 / keep

    def uniform_floats():  # the masks as drawn before: one 32-bit draw per unit
        u = torch.empty(R, B, 2 * H)
        for i in range(R):
            u[i].uniform_(generator=gens[i])
        torch.lt(u, keep, out=u)
        return u.mul_(scale)

    sampler = MaskSampler([("h0.dropout", H), ("h1.dropout", H)], [{"h0.dropout": 0.3, "h1.dropout": 0.3}] * R, list(range(R)), "cpu")
    return uniform_floats, lambda: sampler.draw(B)


def relu_dropout_loops(bn: bool):
    from regbench import batched, kernels
    from regbench.learner import lane_thresholds

    kernel = kernels.get(build=False)
    if kernel is None:
        return None
    z = torch.randn(B, R, H).transpose(0, 1) if bn else torch.randn(R, B, H)
    lanes = torch.randint(-2**15, 2**15, (R, B, 2 * H), dtype=torch.int16)
    keep = torch.full((R, 2 * H), 0.7)
    mask = batched.LaneMask(lanes, 0, H, lane_thresholds(keep), 1 / keep)
    g = torch.randn(R, B, H)

    def pytorch_ops():
        zz = z.detach().requires_grad_()
        (torch.relu(zz) * mask.dense()).backward(g)

    def kernel_pass():
        zz = z.detach().requires_grad_()
        kernels.ReluDropout.apply(zz, mask.lanes, mask.lo, mask.thr, mask.scale, kernel).backward(g)

    return pytorch_ops, kernel_pass


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bn", action="store_true", help="BatchNorm in the step comparison")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    torch.set_num_threads(1)
    units = R * B * 2 * H
    # (the pair's loops, their names, repetitions, factor to the unit, unit); each pair is printed as a ratio
    pairs = [
        (step_loops(args.bn), ("step: vmap(functional_call)", "step: batched by hand"), 50, 1e3, "ms"),
        (eval_loops(args.bn), ("eval: vmap(functional_call)", "eval: batched.forward"), 10, 1e3, "ms"),
        (bn_layer_loops(), ("BN layer: vmap's rule", "BN layer: R*C channels"), 50, 1e3, "ms"),
        (head_grad_loops(), ("head grad: x.T @ g", "head grad: g.T @ x"), 200, 1e6, "us"),
        (mask_loops(), ("masks: where per layer", "masks: in place"), 100, 1e3, "ms"),
        (uniform_loops(), ("draw: uniform floats", "draw: 16-bit lanes"), 100, 1e9 / units, "ns/unit"),
    ]
    fused = relu_dropout_loops(args.bn)
    if fused is not None:
        pairs.append((fused, ("relu+drop: PyTorch's ops", "relu+drop: C++ kernel"), 100, 1e6, "us"))
    loops = {name: (fn, reps, factor, unit) for fns, names, reps, factor, unit in pairs for fn, name in zip(fns, names)}
    times = {k: float("inf") for k in loops}
    for _ in range(args.rounds):
        for k, (fn, reps, _, _) in loops.items():
            times[k] = min(times[k], best(fn, reps))
    print(f"R={R}, batch {B}, widths [{H}, {H}], BN {'on' if args.bn else 'off'}, 1 thread, best of {args.rounds} rounds")
    for k, (_, _, factor, unit) in loops.items():
        print(f"  {k:<32}{times[k] * factor:8.2f} {unit}")
    for _, (a, b), *_ in pairs:
        print(f"  {a} / {b}: {times[a] / times[b]:.2f}x")


if __name__ == "__main__":
    main()
