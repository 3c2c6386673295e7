#!/usr/bin/env python3
"""PyTorch baseline for `muongpt bench --attention`.

Same cases as muongpt (causal over --seq-lens with batch = --tokens / seq_len;
sliding windows and a document mask (optionally windowed: --doc-window; windows of
whole blocks with --window-block) on the longest sequence, batch 1, with the
same random document lengths) and the same FLOP convention: forward = 4 * head_dim
* heads * allowed query-key pairs (counted exactly for the mask), forward+backward
= 3.5 x forward (no credit for recomputation). One JSON line per case and backend,
with muongpt's fields plus "backend".

Backends
  GPU (bf16): causal cases with scaled_dot_product_attention(is_causal=True) under
      sdpa_kernel(FLASH_ATTENTION) ("sdpa_flash") and sdpa_kernel(CUDNN_ATTENTION)
      ("sdpa_cudnn"); window and document cases with FlexAttention compiled by
      torch.compile and a block mask ("flex_attention").
  CPU (fp32, tiny sizes, for smoke tests): SDPA's math backend ("sdpa_math"; an
      explicit boolean mask for the window and document cases) and eager
      FlexAttention, forward only (torch has no FlexAttention backward on the CPU).
A backend that cannot run a case prints a "skip:" line and the script goes on.

Timing: tensors are made directly in SDPA's (B, H, T, D) layout, so no transpose
is timed (muongpt's kernels read (B, T, H, D)). Forward: `steps` calls back to
back on inputs that require grad (as in training: the forward keeps what the
backward needs); forward+backward: `steps` x (forward, torch.autograd.grad of all
three inputs). CUDA events on the GPU, wall time on the CPU; `warmup` untimed
rounds first (they also absorb torch.compile).

  python3 scripts/bench/attention_torch.py --device cuda
  python3 scripts/bench/attention_torch.py --device cpu --seq-lens 64,128 --windows 16 --heads 2 --head-dim 16 --tokens 256
  python3 scripts/bench/attention_torch.py --list-cases --device cuda   # the cases and pair counts, no torch needed
"""
import argparse
import json
import sys
import time
import warnings

warnings.filterwarnings("ignore", message="Failed to initialize NumPy")
warnings.filterwarnings("ignore", message="flex_attention called without torch.compile")

MASK64 = (1 << 64) - 1
GOLDEN = 0x9E3779B97F4A7C15
DOCUMENT_SEED = 1  # src/cli/commands/bench_attention.cpp: kDocumentSeed


def _mix(z):
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & MASK64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & MASK64
    return z ^ (z >> 31)


class SplitMix64:
    """muongpt's Rng (src/util/rng.h) with stream 0: the same draws."""

    def __init__(self, seed):
        self.state = _mix(seed ^ _mix(GOLDEN))

    def next_u64(self):
        self.state = (self.state + GOLDEN) & MASK64
        return _mix(self.state)


def document_lengths(T, mean, seed=DOCUMENT_SEED):
    rng, out, t = SplitMix64(seed), [], 0
    while t < T:
        L = min(1 + rng.next_u64() % (2 * mean - 1), T - t)
        out.append(L)
        t += L
    return out


def row_pairs(T, w, block, docs):
    """Allowed (query, key) pairs of one row of T tokens: query t sees keys j <= t of its own
    document that the window leaves (t - j < w, or with blocks floor(t/b) - floor(j/b) < w/b)."""
    pairs, start = 0, 0
    for L in docs or [T]:
        for t in range(start, start + L):
            first = start
            if w > 0:
                first = max(first, (t // block - (w // block - 1)) * block if block > 0 else t - w + 1)
            pairs += t - first + 1
        start += L
    return pairs


def build_cases(seq_lens, windows, tokens, doc_len, doc_window=0, window_block=0):
    """(batch, seq_len, window, window block, document lengths or None, pairs over the batch), in muongpt's order."""
    cases = [(max(1, tokens // T), T, 0, 0, None, max(1, tokens // T) * row_pairs(T, 0, 0, None)) for T in seq_lens]
    T = max(seq_lens)
    cases += [(1, T, w, window_block, None, row_pairs(T, w, window_block, None)) for w in windows]
    docs = document_lengths(T, doc_len)
    block = window_block if doc_window > 0 else 0
    cases.append((1, T, doc_window, block, docs, row_pairs(T, doc_window, block, docs)))
    return cases


def allowed_keys(q_idx, kv_idx, w, block, doc_ids):
    """The mask rule of row_pairs on index tensors (FlexAttention's mask_mod, the CPU's dense mask)."""
    ok = kv_idx <= q_idx
    if w > 0:
        ok = ok & ((q_idx // block - kv_idx // block < w // block) if block > 0 else (q_idx - kv_idx < w))
    if doc_ids is not None:
        ok = ok & (doc_ids[q_idx] == doc_ids[kv_idx])
    return ok


def int_list(text, name):
    try:
        values = [int(x) for x in text.split(",")]
    except ValueError:
        sys.exit(f"attention_torch.py: {name} expects comma-separated integers, got {text!r}")
    if any(v <= 0 for v in values):
        sys.exit(f"attention_torch.py: {name} must be positive, got {text!r}")
    return values


def parse_args():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    p.add_argument("--device", default=None, help="cuda or cpu (default: cuda when available)")
    p.add_argument("--seq-lens", default=None, help="causal sequence lengths (default 1024..65536 GPU, 128,256,512 CPU)")
    p.add_argument("--windows", default=None, help="windows on the longest sequence (default 128..2048 GPU, 32,64 CPU)")
    p.add_argument("--heads", type=int, default=None, help="default 16 GPU, 4 CPU")
    p.add_argument("--head-dim", type=int, default=None, help="default 128 GPU, 64 CPU")
    p.add_argument("--tokens", type=int, default=None, help="batch x seq_len of the causal cases (131072 GPU, 1024 CPU)")
    p.add_argument("--doc-len", type=int, default=None, help="mean document length (2048 GPU, 64 CPU)")
    p.add_argument("--doc-window", type=int, default=0, help="window of the document-masked case too (0 = none)")
    p.add_argument("--window-block", type=int, default=0,
                   help="windows count whole blocks of this many tokens (the speedrun: 128; 0 = token windows)")
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--backends", default=None,
                   help="comma-separated subset of sdpa_flash,sdpa_cudnn,sdpa_math,flex_attention (default: all "
                        "that apply to the device)")
    p.add_argument("--list-cases", action="store_true", help="print the cases as JSON lines and exit (no torch)")
    a = p.parse_args()
    if a.device is None:
        try:
            import torch
            a.device = "cuda" if torch.cuda.is_available() else "cpu"
        except ImportError:
            a.device = "cpu"
    if a.device not in ("cuda", "cpu"):
        sys.exit(f"attention_torch.py: --device must be cuda or cpu, got {a.device!r}")
    gpu = a.device == "cuda"
    a.seq_lens = int_list(a.seq_lens, "--seq-lens") if a.seq_lens else (
        [1024, 2048, 4096, 8192, 16384, 32768, 65536] if gpu else [128, 256, 512])
    a.windows = int_list(a.windows, "--windows") if a.windows else (
        [128, 256, 512, 1024, 2048] if gpu else [32, 64])
    a.heads = a.heads or (16 if gpu else 4)
    a.head_dim = a.head_dim or (128 if gpu else 64)
    a.tokens = a.tokens or (131072 if gpu else 1024)
    a.doc_len = a.doc_len or (2048 if gpu else 64)
    for name in ("heads", "head_dim", "tokens", "doc_len", "steps"):
        if getattr(a, name) <= 0:
            sys.exit(f"attention_torch.py: --{name.replace('_', '-')} must be positive")
    if a.warmup < 0:
        sys.exit("attention_torch.py: --warmup must be >= 0")
    if a.doc_window < 0 or a.window_block < 0:
        sys.exit("attention_torch.py: --doc-window and --window-block must be >= 0")
    if a.window_block > 0:
        for w in a.windows + ([a.doc_window] if a.doc_window > 0 else []):
            if w % a.window_block:
                sys.exit(f"attention_torch.py: window {w} is not a multiple of --window-block {a.window_block}")
    return a


def main():
    a = parse_args()
    gpu = a.device == "cuda"
    cases = build_cases(a.seq_lens, a.windows, a.tokens, a.doc_len, a.doc_window, a.window_block)
    if a.list_cases:
        for B, T, w, block, docs, pairs in cases:
            print(json.dumps({"seq_len": T, "window": w, "window_block": block, "doc_mask": docs is not None,
                              "documents": len(docs) if docs else 1, "batch": B, "pairs": pairs}))
        return

    import torch
    import torch.nn.functional as F
    from torch.nn.attention import SDPBackend, sdpa_kernel

    try:
        from torch.nn.attention.flex_attention import create_block_mask, flex_attention
    except ImportError as e:
        create_block_mask = flex_attention = None
        flex_missing = str(e)

    H, D = a.heads, a.head_dim
    dtype = torch.bfloat16 if gpu else torch.float32
    dev = torch.device(a.device)
    device_name = torch.cuda.get_device_name() if gpu else f"cpu ({torch.get_num_threads()} threads)"
    wanted = set(a.backends.split(",")) if a.backends else None
    scale = D ** -0.5

    def use(backend):
        return wanted is None or backend in wanted

    def skip(backend, case, why):
        B, T, w, _, docs, _ = case
        print(f"skip: {backend} at seq_len {T}, window {w}, doc_mask {docs is not None}: {why}", flush=True)

    def timed(fn, steps, warmup):
        """Mean ms of fn() over `steps` back-to-back calls after `warmup` untimed ones."""
        for _ in range(warmup):
            fn()
        if gpu:
            torch.cuda.synchronize()
            start, stop = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            for _ in range(steps):
                fn()
            stop.record()
            torch.cuda.synchronize()
            return start.elapsed_time(stop) / steps
        t0 = time.perf_counter()
        for _ in range(steps):
            fn()
        return (time.perf_counter() - t0) * 1e3 / steps

    def inputs(B, T, grad):
        g = torch.Generator(device=dev).manual_seed(1)
        make = lambda: torch.randn(B, H, T, D, device=dev, dtype=dtype, generator=g)
        q, k, v = (make().requires_grad_(grad) for _ in range(3))
        return q, k, v, make()

    def report(backend, case, ms_fwd, ms_fwd_bwd):
        B, T, w, block, docs, pairs = case
        flops = 4.0 * D * H * pairs
        row = {"backend": backend, "seq_len": T, "window": w, "window_block": block, "doc_mask": docs is not None,
               "documents": len(docs) if docs else 1, "batch": B, "heads": H, "head_dim": D,
               "device": device_name, "dtype": str(dtype).replace("torch.", ""), "pairs": pairs,
               "flops_fwd": flops, "ms_fwd": ms_fwd, "ms_fwd_bwd": ms_fwd_bwd,
               "tflops_fwd": flops / (ms_fwd * 1e-3) / 1e12,
               "tflops_fwd_bwd": None if ms_fwd_bwd is None else 3.5 * flops / (ms_fwd_bwd * 1e-3) / 1e12,
               "steps": a.steps, "warmup": a.warmup}
        print(json.dumps(row), flush=True)

    def measure(backend, case, attend, backward=True):
        """attend(q, k, v) -> out. Times forward and forward+backward, checks finiteness, reports."""
        B, T = case[0], case[1]
        q, k, v, dout = inputs(B, T, backward)
        grads = None

        def fwd():
            attend(q, k, v)

        def fwd_bwd():
            nonlocal grads
            grads = torch.autograd.grad(attend(q, k, v), (q, k, v), dout)

        try:
            ms_fwd = timed(fwd, a.steps, max(a.warmup, 1))
            ms_fwd_bwd = timed(fwd_bwd, a.steps, max(a.warmup, 1)) if backward else None
            out = attend(q, k, v).detach()
            finite = bool(torch.isfinite(out).all()) and (grads is None or all(bool(torch.isfinite(g).all())
                                                                                for g in grads))
        except Exception as e:  # an unsupported backend, shape or device; out of memory
            skip(backend, case, f"{type(e).__name__}: {str(e).strip().splitlines()[0] if str(e).strip() else ''}")
            return
        finally:
            del q, k, v, dout
            if gpu:
                torch.cuda.empty_cache()
        if not finite:
            skip(backend, case, "NaN/inf in the outputs or gradients")
            return
        report(backend, case, ms_fwd, ms_fwd_bwd)

    print(f"attention_torch.py on {device_name}: {dtype}, heads {H}, head dim {D}, torch {torch.__version__}, "
          f"{a.steps} timed runs after {a.warmup} warmup", flush=True)
    print("FLOPs: forward = 4 * head_dim * heads * allowed query-key pairs; forward+backward = 3.5 x forward; "
          "layout (B, H, T, D), no transposes timed", flush=True)

    sdpa_backends = [("sdpa_flash", SDPBackend.FLASH_ATTENTION), ("sdpa_cudnn", SDPBackend.CUDNN_ATTENTION)] if gpu \
        else [("sdpa_math", SDPBackend.MATH)]
    if not gpu and (wanted is None or wanted & {"sdpa_flash", "sdpa_cudnn"}):
        print("skip: sdpa_flash, sdpa_cudnn: CUDA only (the CPU run uses sdpa_math)", flush=True)

    flex = None
    if flex_attention is None:
        print(f"skip: flex_attention: not in this torch ({flex_missing})", flush=True)
    elif gpu:
        flex = torch.compile(flex_attention, dynamic=False)
    else:
        flex = flex_attention  # eager; torch.compile's CPU path is not what this smoke test is about

    for case in cases:
        B, T, w, block, docs, _ = case
        if w == 0 and docs is None:  # causal: SDPA backends
            for name, backend in sdpa_backends:
                if not use(name):
                    continue

                def attend(q, k, v, backend=backend):
                    with sdpa_kernel(backend):
                        return F.scaled_dot_product_attention(q, k, v, is_causal=True, scale=scale)

                measure(name, case, attend)
            continue
        # window or document mask
        doc_ids = None
        if docs is not None:
            doc_ids = torch.repeat_interleave(torch.arange(len(docs), device=dev), torch.tensor(docs, device=dev))
        if not gpu and use("sdpa_math"):
            i = torch.arange(T, device=dev)
            allowed = allowed_keys(i[:, None], i[None, :], w, block, doc_ids)

            def attend_dense(q, k, v, allowed=allowed):
                with sdpa_kernel(SDPBackend.MATH):
                    return F.scaled_dot_product_attention(q, k, v, attn_mask=allowed, scale=scale)

            measure("sdpa_math", case, attend_dense)
        if flex is None or not use("flex_attention"):
            continue

        def mask_mod(b, h, q_idx, kv_idx, w=w, block=block, doc_ids=doc_ids):
            return allowed_keys(q_idx, kv_idx, w, block, doc_ids)

        try:
            block_mask = create_block_mask(mask_mod, None, None, T, T, device=a.device)
        except Exception as e:
            skip("flex_attention", case, f"create_block_mask: {type(e).__name__}: {e}")
            continue

        def attend_flex(q, k, v, block_mask=block_mask):
            return flex(q, k, v, block_mask=block_mask, scale=scale)

        if not gpu:
            print(f"note: flex_attention on the CPU: forward only (torch has no CPU backward), seq_len {T}, "
                  f"window {w}, doc_mask {docs is not None}", flush=True)
        measure("flex_attention", case, attend_flex, backward=gpu)


if __name__ == "__main__":
    main()
