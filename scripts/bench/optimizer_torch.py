#!/usr/bin/env python3
"""PyTorch baselines for `muongpt bench --optimizer`: one optimizer step on the
same parameter shapes, random parameters and gradients (fixed seed).

The shapes come from muongpt itself (`muongpt bench --optimizer --dump-shapes`),
either from a file (--shapes-json) or by running the binary (--config, --muongpt).
Each Muon *block* that muongpt orthogonalises (whole matrices; a fused q/k/v
matrix as three blocks; head blocks with per_head) becomes one 2-D parameter
here, so both sides run Newton-Schulz on the same matrices; --whole-matrices
uses the parameters' own shapes instead.

Timed, each on its own (mean over --steps after --warmup):
  torch_muon_ms      torch.optim.Muon (torch >= 2.9; Nesterov, its bf16 quintic
                     Newton-Schulz, 5 steps, one matrix at a time)
  speedrun_muon_ms   a Muon in the speedrun's style, written here: momentum
                     buf.lerp_(g, 1-mu), Nesterov g.lerp(buf, mu), 5 quintic
                     Newton-Schulz steps (3.4445, -4.7750, 2.0315) in bf16 on
                     X/(||X||_F+1e-7), update scaled by sqrt(max(1, rows/cols)),
                     one matrix at a time (--ns-dtype float32: fp32 instead)
  speedrun_batched_muon_ms  the same with same-shape matrices stacked into one
                     batched Newton-Schulz (the later speedruns' layout)
  adamw_ms           torch.optim.AdamW on the other parameters (fused on CUDA)
Last line: one JSON object.

  python3 scripts/bench/optimizer_torch.py --config configs/speedrun/04_muon.json --device cuda
"""
import argparse
import json
import os
import subprocess
import sys
import time

import torch

NS_COEFFS = (3.4445, -4.7750, 2.0315)


def ns_flops(rows, cols, iters=5):
    r, c = min(rows, cols), max(rows, cols)
    return iters * (4.0 * r * r * c + 2.0 * r * r * r)


def newton_schulz(G, steps=5, eps=1e-7, dtype=torch.bfloat16):
    """Quintic Newton-Schulz on the last two dims (batched when G is 3-D), in bf16 (the speedrun's)."""
    a, b, c = NS_COEFFS
    X = G.to(dtype)
    tall = X.size(-2) > X.size(-1)
    if tall:
        X = X.mT
    X = X / (X.norm(dim=(-2, -1), keepdim=True) + eps)
    for _ in range(steps):
        A = X @ X.mT
        B = b * A + c * (A @ A)
        X = a * X + B @ X
    return X.mT if tall else X


class SpeedrunStyleMuon:
    """Speedrun-style Muon, one matrix at a time (batched=False) or one stacked
    Newton-Schulz per shape (batched=True)."""

    def __init__(self, params, lr=0.02, momentum=0.95, batched=False, ns_dtype=torch.bfloat16):
        self.ns_dtype = ns_dtype
        self.params, self.lr, self.momentum = list(params), lr, momentum
        self.bufs = [torch.zeros_like(p) for p in self.params]
        self.by_shape = {}
        for i, p in enumerate(self.params):
            self.by_shape.setdefault(tuple(p.shape), []).append(i)
        self.batched = batched

    @torch.no_grad()
    def step(self):
        mu = self.momentum
        if not self.batched:
            for p, buf in zip(self.params, self.bufs):
                g = p.grad
                buf.lerp_(g, 1 - mu)
                u = g.lerp(buf, mu)
                o = newton_schulz(u, dtype=self.ns_dtype)
                p.add_(o.to(p.dtype), alpha=-self.lr * max(1.0, p.size(-2) / p.size(-1)) ** 0.5)
            return
        for (rows, cols), idx in self.by_shape.items():
            ps = [self.params[i] for i in idx]
            bufs = [self.bufs[i] for i in idx]
            grads = [p.grad for p in ps]
            torch._foreach_lerp_(bufs, grads, 1 - mu)
            u = torch.stack(grads).lerp_(torch.stack(bufs), mu)
            o = newton_schulz(u, dtype=self.ns_dtype).to(ps[0].dtype)
            torch._foreach_add_(ps, list(o.unbind(0)), alpha=-self.lr * max(1.0, rows / cols) ** 0.5)


def load_shapes(a):
    if a.shapes_json:
        with open(a.shapes_json) as f:
            return json.load(f)
    if not a.config:
        sys.exit("optimizer_torch.py: give --shapes-json FILE or --config FILE (with --muongpt BIN)")
    if not os.access(a.muongpt, os.X_OK):
        sys.exit(f"optimizer_torch.py: {a.muongpt} is not an executable muongpt binary (pass --muongpt)")
    out = subprocess.run([a.muongpt, "bench", "--optimizer", "--dump-shapes", "-", "--config", a.config,
                          "--device", "cpu"], capture_output=True, text=True)
    if out.returncode != 0:
        sys.exit(f"optimizer_torch.py: {a.muongpt} bench --optimizer --dump-shapes failed:\n{out.stderr}{out.stdout}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    ap.add_argument("--config", help="muongpt config; shapes from `MUONGPT bench --optimizer --dump-shapes -`")
    ap.add_argument("--muongpt", default="build/muongpt", help="muongpt binary (with --config)")
    ap.add_argument("--shapes-json", help="file written by `muongpt bench --optimizer --dump-shapes FILE`")
    ap.add_argument("--device", choices=["cpu", "cuda"], default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--whole-matrices", action="store_true",
                    help="Muon on the parameters' own shapes (fused q/k/v as one matrix)")
    ap.add_argument("--ns-dtype", choices=["bfloat16", "float32"], default="bfloat16",
                    help="Newton-Schulz dtype of the speedrun-style Muon (torch.optim.Muon always uses bf16); "
                         "float32 is the fair match for muongpt's fp32 CPU reference on CPUs without bf16 units")
    ap.add_argument("--skip-torch-muon", action="store_true", help="skip torch.optim.Muon")
    ap.add_argument("--skip-unbatched", action="store_true", help="skip the one-matrix-at-a-time speedrun Muon")
    a = ap.parse_args()
    if a.steps < 1 or a.warmup < 0:
        sys.exit("optimizer_torch.py: --steps must be >= 1 and --warmup >= 0")
    if a.device == "cuda" and not torch.cuda.is_available():
        sys.exit("optimizer_torch.py: --device cuda but torch sees no CUDA device")
    shapes = load_shapes(a)
    dev = torch.device(a.device)
    ns_dtype = getattr(torch, a.ns_dtype)
    gen = torch.Generator(device="cpu").manual_seed(0)

    def make(shape):
        p = torch.nn.Parameter((torch.rand(shape, generator=gen) * 0.04 - 0.02).to(dev))
        p.grad = (torch.rand(shape, generator=gen) * 2e-3 - 1e-3).to(dev)
        return p

    muon_shapes, adamw_shapes = [], []
    for p in shapes["params"]:
        if p["type"] == "muon":
            muon_shapes += [p["shape"]] if a.whole_matrices else [list(b) for b in p["blocks"]]
        else:
            adamw_shapes.append(p["shape"])

    def timed(step):
        for _ in range(a.warmup):
            step()
        if a.device == "cuda":
            torch.cuda.synchronize()
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            for _ in range(a.steps):
                step()
            end.record()
            end.synchronize()
            return start.elapsed_time(end) / a.steps
        t0 = time.perf_counter()
        for _ in range(a.steps):
            step()
        return (time.perf_counter() - t0) * 1e3 / a.steps

    r = {"device": torch.cuda.get_device_name(dev) if a.device == "cuda" else "cpu",
         "config": shapes.get("config"), "torch": torch.__version__, "threads": torch.get_num_threads(),
         "steps": a.steps, "warmup": a.warmup, "speedrun_ns_dtype": a.ns_dtype, "muon_matrices": len(muon_shapes),
         "muon_params": sum(int(torch.Size(s).numel()) for s in muon_shapes),
         "adamw_params": sum(int(torch.Size(s).numel()) for s in adamw_shapes),
         "ns_flops": sum(ns_flops(*s) for s in muon_shapes)}

    # (a) torch.optim.Muon + torch.optim.AdamW
    if a.skip_torch_muon:
        r["torch_muon_ms"] = None
    elif hasattr(torch.optim, "Muon"):
        muon = [make(s) for s in muon_shapes]
        opt = torch.optim.Muon(muon, lr=0.02, weight_decay=0.0, momentum=0.95, nesterov=True,
                               ns_coefficients=NS_COEFFS, eps=1e-7, ns_steps=5, adjust_lr_fn="original")
        r["torch_muon_ms"] = timed(opt.step)
        del muon, opt
    else:
        r["torch_muon_ms"] = None
        print(f"note: torch {torch.__version__} has no torch.optim.Muon (added in 2.9)")
    adamw = [make(s) for s in adamw_shapes]
    kwargs = {"fused": True} if a.device == "cuda" else {"foreach": True}
    opt = torch.optim.AdamW(adamw, lr=1e-3, betas=(0.9, 0.95), eps=1e-8, weight_decay=0.0, **kwargs)
    r["adamw_ms"] = timed(opt.step) if adamw else 0.0
    del adamw, opt

    # (b) speedrun-style Muon, one matrix at a time, then batched per shape
    if a.skip_unbatched:
        r["speedrun_muon_ms"] = None
    else:
        muon = [make(s) for s in muon_shapes]
        r["speedrun_muon_ms"] = timed(SpeedrunStyleMuon(muon, ns_dtype=ns_dtype).step)
        del muon
    muon = [make(s) for s in muon_shapes]
    r["speedrun_batched_muon_ms"] = timed(SpeedrunStyleMuon(muon, batched=True, ns_dtype=ns_dtype).step)
    del muon

    fmt = lambda x: "n/a" if x is None else f"{x:.3f}"
    print(f"torch {torch.__version__} on {r['device']} ({r['threads']} threads), {r['config']}: "
          f"{r['muon_matrices']} Muon matrices ({r['muon_params']:,} params), {r['adamw_params']:,} AdamW params")
    print(f"{'':44s} {'ms/step':>10s}")
    print(f"{'torch.optim.Muon':44s} {fmt(r['torch_muon_ms']):>10s}")
    print(f"{'speedrun-style Muon (per matrix, ' + a.ns_dtype + ')':44s} {fmt(r['speedrun_muon_ms']):>10s}")
    print(f"{'speedrun-style Muon (batched, ' + a.ns_dtype + ')':44s} {fmt(r['speedrun_batched_muon_ms']):>10s}")
    print(f"{'torch.optim.AdamW':44s} {fmt(r['adamw_ms']):>10s}")
    print(json.dumps(r))


if __name__ == "__main__":
    main()
