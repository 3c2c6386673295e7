#!/usr/bin/env python3
"""PyTorch reference of the muongpt model and optimizers.

Builds the model described by a muongpt JSON config in PyTorch (float64),
using PyTorch's own ops wherever one exists (scaled_dot_product_attention,
layer_norm, gelu, cross_entropy, torch.optim.AdamW), and writes a fixture the
C++ tests compare against (tests/unit/test_reference.cpp):

  params       the random initial parameters, by muongpt parameter name
  tokens/targets, logits, loss, grads       one forward/backward
  train        10 optimizer steps (Muon + AdamW): batches, losses, final params

Muon is written here from its definition (the speedrun's Newton-Schulz,
momentum forms and update scales) because torch.optim.Muon orthogonalises in
bfloat16, which is no fp32 oracle.

A second fixture, muon_variants.json (tests/unit/test_muon_variants.cpp),
holds a few Muon steps on the matrices of tiny models for each variant
(update scale none, NorMuon, cautious weight decay and its lr_squared
schedule, per-head orthogonalisation) and QK-clip applied to given max
logits; see docs/muon.md for the formulas and their sources.

Usage (where PyTorch is installed):
  python3 scripts/reference/reference.py                 # regenerate all fixtures
  python3 scripts/reference/reference.py --only muon_variants
  python3 scripts/reference/reference.py --check         # compare with committed ones
"""
import argparse
import fnmatch
import json
import itertools
import math
import os
import sys

import torch
import torch.nn.functional as F

torch.set_default_dtype(torch.float64)
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
FIXTURE_DIR = os.path.join(ROOT, "tests", "fixtures", "reference")

# ---------------------------------------------------------------------------
# Configurations (muongpt JSON format). Every feature of the dense-attention
# era is on in "all_features"; "gpt2_style" covers the other side of each switch.
# ---------------------------------------------------------------------------

def adam_group(name, params, lr, **kw):
    g = {"name": name, "type": "adamw", "params": params, "lr": lr, "betas": [0.8, 0.95], "eps": 1e-10,
         "weight_decay": 0.0}
    g.update(kw)
    return g


CONFIGS = {
    "all_features": {
        "model": {
            "vocab_size": 61, "padded_vocab_size": 64, "n_layer": 4, "n_head": 2, "d_model": 12,
            "mlp_hidden": 24, "max_seq_len": 16, "pos_embedding": "rope", "rope_base": 10000.0,
            "norm": "rmsnorm", "norm_weight": True, "norm_eps": 1e-6, "embed_norm": True, "qkv": "fused",
            "bias": True, "qk_norm": True, "qk_norm_position": "before_rope", "attn_scale": 0.3,
            "activation": "relu2", "tie_embeddings": False, "logit_softcap": 4.0,
            "mask_padded_logits": False, "attn_residual_scale": 0.9, "value_residual": True,
            "x0_shortcut": True, "unet_skips": True,
        },
        "batch": {"global_tokens": 16, "micro_batch": 2, "seq_len": 8},
        "schedule": {"kind": "wsd", "warmup_steps": 0, "cooldown_frac": 0.5, "final_lr_frac": 0.1},
        "optim": {"groups": [
            {"name": "hidden", "type": "muon", "params": ["blocks.*.attn.*.weight", "blocks.*.mlp.*.weight"],
             "lr": 0.02, "weight_decay": 0.01,
             "momentum": 0.95, "momentum_warmup_start": 0.85, "momentum_warmup_steps": 5, "nesterov": True,
             "momentum_form": "ema", "update_scale": "original",
             "ns": {"coefficients": "quintic", "steps": 5, "norm_scale": 1.0, "norm_eps": 1e-7}},
            adam_group("embed", ["tok_embed"], 0.3),
            adam_group("head", ["lm_head"], 0.01, weight_decay=0.05),
            adam_group("rest", ["*"], 0.04),
        ]},
        "train": {"steps": 10},
    },
    "gpt2_style": {
        "model": {
            "vocab_size": 53, "padded_vocab_size": 56, "n_layer": 2, "n_head": 2, "d_model": 8,
            "mlp_hidden": 0, "max_seq_len": 12, "pos_embedding": "learned", "norm": "layernorm",
            "norm_eps": 1e-5, "embed_norm": False, "qkv": "separate", "bias": True, "qk_norm": True,
            "qk_norm_position": "after_rope", "attn_scale": None, "activation": "gelu",
            "tie_embeddings": True, "logit_softcap": 0.0, "mask_padded_logits": True,
            "attn_residual_scale": 1.0, "value_residual": False, "x0_shortcut": False, "unet_skips": False,
        },
        "batch": {"global_tokens": 20, "micro_batch": 2, "seq_len": 10},
        "schedule": {"kind": "cosine", "warmup_steps": 3, "cooldown_frac": 0.0, "final_lr_frac": 0.2},
        "optim": {"groups": [
            {"name": "hidden", "type": "muon", "params": ["blocks.*.attn.*.weight", "blocks.*.mlp.*.weight"],
             "lr": 0.05, "weight_decay": 0.1, "momentum": 0.9, "nesterov": True, "momentum_form": "sum",
             "update_scale": "match_rms_adamw",
             "ns": {"coefficients": "polar_express", "steps": 5, "norm_scale": 1.02, "norm_eps": 1e-6}},
            adam_group("rest", ["*"], 0.01, betas=[0.9, 0.99], eps=1e-8, weight_decay=0.02),
        ]},
        "train": {"steps": 10},
    },
    "value_embeds": {  # records #15-#18: value embeddings, attention-free block, block windows, documents
        "model": {
            "vocab_size": 61, "padded_vocab_size": 64, "n_layer": 5, "n_head": 2, "d_model": 16,
            "mlp_hidden": 24, "max_seq_len": 16, "pos_embedding": "rope", "rope_base": 1024.0,
            "rope_frequencies": "half_truncated", "norm": "rmsnorm", "norm_weight": False, "norm_eps": 1e-6,
            "embed_norm": True, "qkv": "separate", "bias": False, "qk_norm": True,
            "qk_norm_position": "before_rope", "attn_scale": 0.3, "activation": "relu2",
            "tie_embeddings": False, "logit_softcap": 4.0, "mask_padded_logits": False,
            "attn_residual_scale": 1.0, "value_residual": False, "value_embeds": 2,
            "value_embed_layers": [0, 1, -1, 1, 0], "value_mix": "weighted", "attention_free_layers": [2],
            "x0_shortcut": True, "unet_skips": True, "attn_window": [0, 8, 4, 4, 8], "window_block": 4,
            "document_mask": True,
        },
        "batch": {"global_tokens": 24, "micro_batch": 2, "seq_len": 12},
        "schedule": {"kind": "wsd", "warmup_steps": 0, "cooldown_frac": 0.4, "final_lr_frac": 0.0},
        "optim": {"groups": [
            {"name": "hidden", "type": "muon", "params": ["blocks.*.attn.*.weight", "blocks.*.mlp.*.weight"],
             "lr": 0.03, "weight_decay": 0.0, "momentum": 0.95, "momentum_warmup_start": 0.85,
             "momentum_warmup_steps": 4, "nesterov": True, "momentum_form": "ema", "update_scale": "original",
             "ns": {"coefficients": "quintic", "steps": 5, "norm_scale": 1.0, "norm_eps": 1e-7}},
            adam_group("embed", ["tok_embed", "value_embeds.*"], 0.3),
            adam_group("head", ["lm_head"], 0.01),
            adam_group("rest", ["*"], 0.04),
        ]},
        "train": {"steps": 10},
    },
}

CONFIGS["late_records"] = {  # records #28-#45: attention gate, MLP-free block, FlashAttention windows in
    # stages with a scale and YaRN, sigmoid-gated U-net skips, per-layer final windows, smear, a skipped
    # block, chosen skips (not contiguous), extension steps, backout from the state that is also a U-net
    # skip's source
    "model": dict(CONFIGS["value_embeds"]["model"], **{
        "n_layer": 5, "n_head": 2, "d_model": 24, "mlp_hidden": 20, "value_embed_layers": [0, 1, -1, -1, 0],
        "attention_free_layers": [3], "mlp_free_layers": [0], "attn_gate_dims": 5,
        "attn_window": [8, 4, 4, 4, 8], "window_block": 0, "window_counts": "previous", "attn_scale": 0.3,
        "unet_skip_gate": "sigmoid", "smear_gate_dims": 4, "n_layer": 6, "unet_skip_layers": [3, 5],
        "value_embed_layers": [-1, 0, 1, -1, 0, 1], "attention_free_layers": [0, 3], "mlp_free_layers": [0, 1],
        "attn_window": [8, 8, 4, 4, 8, 4], "backout_layer": 2,
    }),
    "batch": {"global_tokens": 24, "micro_batch": 2, "seq_len": 12},
    "schedule": {"kind": "wsd", "warmup_steps": 0, "cooldown_frac": 0.5, "final_lr_frac": 0.1, "extension_steps": 2,
                 "window_stages": {"windows": [2, 4, 6], "multiple": 2, "final_eval": 8,
                                   "final_eval_windows": [0, 0, 0, 0, 10, 0], "scale_log_factor": 0.2,
                                   "yarn": True, "yarn_alpha": 0.1, "yarn_beta": 0.5}},
    "optim": CONFIGS["value_embeds"]["optim"],
    "train": {"steps": 10},
}

POLAR_EXPRESS = [
    (8.156554524902461, -22.48329292557795, 15.878769915207462),
    (4.042929935166739, -2.808917465908714, 0.5000178451051316),
    (3.8916678022926607, -2.772484153217685, 0.5060648178503393),
    (3.285753657755655, -2.3681294933425376, 0.46449024233003106),
    (2.3465413258596377, -1.7097828382687081, 0.42323551169305323),
]

# ---------------------------------------------------------------------------
# Model
# ---------------------------------------------------------------------------

def param_shapes(m):
    """Parameter names and shapes, in muongpt's parameter-table order."""
    C, L, Vp = m["d_model"], m["n_layer"], m["padded_vocab_size"]
    Fh = m["mlp_hidden"] or 4 * C
    layernorm = m["norm"] == "layernorm"
    out = []

    def norm(prefix):
        if layernorm or m.get("norm_weight", False):
            out.append((prefix + ".weight", (C,)))
        if layernorm:
            out.append((prefix + ".bias", (C,)))

    def attention_shapes(b, l):
        norm(b + "norm1")
        if m["qkv"] == "fused":
            out.append((b + "attn.qkv.weight", (3 * C, C)))
        else:
            out.extend((b + f"attn.{n}.weight", (C, C)) for n in "qkv")
        if m["bias"]:
            if m["qkv"] == "fused":
                out.append((b + "attn.qkv.bias", (3 * C,)))
            else:
                out.extend((b + f"attn.{n}.bias", (C,)) for n in "qkv")
        out.append((b + "attn.proj.weight", (C, C)))
        if m["bias"]:
            out.append((b + "attn.proj.bias", (C,)))
        if m.get("attn_gate_dims", 0) > 0:
            out.append((b + "attn.gate.weight", (m["n_head"], m["attn_gate_dims"])))
        if has_value_lambda(m, l):
            out.append((b + "attn.value_lambda", (2,) if m.get("value_mix", "lerp") == "weighted" else (1,)))

    out.append(("tok_embed", (Vp, C)))
    if m["pos_embedding"] == "learned":
        out.append(("pos_embed", (m["max_seq_len"], C)))
    for t in range(m.get("value_embeds", 0)):
        out.append((f"value_embeds.{t}", (Vp, C)))
    if m.get("smear_gate_dims", 0) > 0:
        out.append(("smear.gate.weight", (1, m["smear_gate_dims"])))
        out.append(("smear.lambda", (1,)))
    if m["embed_norm"]:
        norm("embed_norm")
    for l in range(L):
        b = f"blocks.{l}."
        if has_attention(m, l):
            attention_shapes(b, l)
        if m["x0_shortcut"] and not is_skipped(m, l):
            out.append((b + "x0_lambdas", (2,)))
        if not has_mlp(m, l):
            continue
        norm(b + "norm2")
        out.append((b + "mlp.fc.weight", (Fh, C)))
        if m["bias"]:
            out.append((b + "mlp.fc.bias", (Fh,)))
        out.append((b + "mlp.proj.weight", (C, Fh)))
        if m["bias"]:
            out.append((b + "mlp.proj.bias", (C,)))
    if m["unet_skips"]:
        out.append(("skip_weights", (L // 2,)))
    if m.get("backout_layer", -1) >= 0:
        out.append(("backout.lambda", (1,)))
    norm("final_norm")
    if not m["tie_embeddings"]:
        out.append(("lm_head", (Vp, C)))
    return out


def has_attention(m, l):
    return l not in m.get("attention_free_layers", [])


def has_mlp(m, l):
    return l not in m.get("mlp_free_layers", [])


def is_skipped(m, l):
    """A block with neither sublayer is skipped whole (record #35's first block)."""
    return not has_attention(m, l) and not has_mlp(m, l)


def value_table(m, l):
    """Value-embedding table of layer l, or None."""
    if m.get("value_embeds", 0) == 0:
        return None
    layers = m.get("value_embed_layers") or list(range(m["n_layer"]))
    return None if layers[l] < 0 else layers[l]


def has_value_lambda(m, l):
    if not has_attention(m, l):
        return False
    if m.get("value_mix", "lerp") == "weighted":
        return m["value_residual"] or m.get("value_embeds", 0) > 0
    return m["value_residual"] or value_table(m, l) is not None


def qkv_weight(P, b, m):
    if m["qkv"] == "fused":
        return P[b + "attn.qkv.weight"], P.get(b + "attn.qkv.bias")
    w = torch.cat([P[b + f"attn.{n}.weight"] for n in "qkv"])
    bias = torch.cat([P[b + f"attn.{n}.bias"] for n in "qkv"]) if m["bias"] else None
    return w, bias


def rope_frequencies(base, D, frequencies="standard"):
    if frequencies == "half_truncated":  # the speedrun's record #17 on
        inv_freq = (1.0 / base) ** torch.linspace(0, 1, steps=D // 4, dtype=torch.float64)
        return torch.cat([inv_freq, inv_freq.new_zeros(D // 4)])
    return 1.0 / (base ** (torch.arange(0, D, 2, dtype=torch.float64) / D))


def rope(x, inv_freq):
    """Half-split rotary embedding with the speedrun's sign convention; x is (B, T, H, D)."""
    T, D = x.shape[1], x.shape[3]
    freqs = torch.outer(torch.arange(T, dtype=torch.float64), inv_freq)
    cos, sin = freqs.cos()[None, :, None, :], freqs.sin()[None, :, None, :]
    x1, x2 = x[..., : D // 2], x[..., D // 2:]
    return torch.cat([x1 * cos + x2 * sin, -x1 * sin + x2 * cos], dim=-1)


def attention_mask(m, l, T, doc_ids, windows):
    """Boolean (B or 1, 1, T, T) mask of keys each query may see in layer l."""
    t = torch.arange(T)[:, None]
    j = torch.arange(T)[None, :]
    allowed = j <= t
    w = 0 if not windows else (windows[0] if len(windows) == 1 else windows[l])
    block = m.get("window_block", 0)
    if w > 0:
        if block > 0:
            allowed = allowed & (t // block - j // block < w // block)
        elif m.get("window_counts", "keys") == "previous":  # FlashAttention's window_size = (w, 0)
            allowed = allowed & (t - j <= w)
        else:
            allowed = allowed & (t - j < w)
    allowed = allowed[None, None]
    if m.get("document_mask", False):
        allowed = allowed & (doc_ids[:, None, :, None] == doc_ids[:, None, None, :])
    return allowed


def forward(P, m, tokens, doc_ids=None, att=None):
    """Logits (B, T, Vp) before the softcap, and the capped logits used by the loss. att: the
    attention settings of the step (windows, scale, RoPE frequencies); None = the model's own."""
    B, T = tokens.shape
    C, H, L = m["d_model"], m["n_head"], m["n_layer"]
    D = C // H
    eps = m["norm_eps"]
    layernorm = m["norm"] == "layernorm"

    def norm(x, prefix):
        if layernorm:
            return F.layer_norm(x, (C,), P[prefix + ".weight"], P[prefix + ".bias"], eps)
        return F.rms_norm(x, (C,), P.get(prefix + ".weight"), eps)

    def head_norm(x):  # per-head RMSNorm without weight (QK-norm)
        return F.rms_norm(x, (D,), None, eps)

    x = P["tok_embed"][tokens]
    if m.get("smear_gate_dims", 0) > 0:  # record #34: x[t] += lambda * sigmoid(x[t, :K] . w) * x[t-1]
        K = m["smear_gate_dims"]
        gate = P["smear.lambda"] * torch.sigmoid(F.linear(x[:, 1:, :K], P["smear.gate.weight"]))
        x = torch.cat([x[:, :1], x[:, 1:] + gate * x[:, :-1]], dim=1)
    if m["pos_embedding"] == "learned":
        x = x + P["pos_embed"][:T][None]
    if m["embed_norm"]:
        x = norm(x, "embed_norm")
    x0 = x
    att = att or default_attention(m)
    scale, inv_freq, windows = att["scale"], att["freqs"], att["windows"]
    enc = L // 2
    skips = []  # stream states at block boundaries 1..enc
    v_first = []  # layer 0's V before mixing, for the value residual
    value_embeds = [P[f"value_embeds.{t}"][tokens] for t in range(m.get("value_embeds", 0))]

    def attend(h, l, b):
        w, bias = qkv_weight(P, b, m)
        q, k, v = F.linear(h, w, bias).split(C, dim=-1)
        if not v_first:
            v_first.append(v)
        source = v_first[0] if m["value_residual"] else (
            None if value_table(m, l) is None else value_embeds[value_table(m, l)])
        if has_value_lambda(m, l):
            lam = P[b + "attn.value_lambda"]
            if m.get("value_mix", "lerp") == "weighted":  # l0 v + l1 s (records #15 on)
                v = lam[0] * v + (lam[1] * source if source is not None else 0)
            else:  # (1 - l) v + l s
                v = (1 - lam[0]) * v + lam[0] * source
        q, k, v = (t.view(B, T, H, D) for t in (q, k, v))
        for name in ("q", "k"):
            t = q if name == "q" else k
            if m["qk_norm"] and (m["qk_norm_position"] == "before_rope" or m["pos_embedding"] != "rope"):
                t = head_norm(t)
            if m["pos_embedding"] == "rope":
                t = rope(t, inv_freq)
            if m["qk_norm"] and m["qk_norm_position"] == "after_rope" and m["pos_embedding"] == "rope":
                t = head_norm(t)
            if name == "q":
                q = t
            else:
                k = t
        masked = m.get("document_mask", False) or any(windows)
        mask = attention_mask(m, l, T, doc_ids, windows) if masked else None
        y = F.scaled_dot_product_attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2),
                                           attn_mask=mask, is_causal=not masked, scale=scale)
        y = y.transpose(1, 2)  # (B, T, H, D)
        if m.get("attn_gate_dims", 0) > 0:  # record #28: per-head sigmoid gate from the first K input channels
            K = m["attn_gate_dims"]
            y = y * torch.sigmoid(F.linear(h[..., :K], P[b + "attn.gate.weight"]))[..., None]
        y = y.reshape(B, T, C)
        return m["attn_residual_scale"] * F.linear(y, P[b + "attn.proj.weight"], P.get(b + "attn.proj.bias"))
    backout = m.get("backout_layer", -1)

    def takes_unet_skip(m, l):
        if not m["unet_skips"] or not enc <= l < L:
            return False
        if m.get("unet_skip_layers"):  # record #45: only the listed decoder blocks
            return l in m["unet_skip_layers"]
        return l < enc + (m.get("unet_skip_blocks") or enc)

    for l in range(L):
        b = f"blocks.{l}."
        if l == backout + 1:  # record #40: the residual stream after block backout_layer
            x_backout = x
        if is_skipped(m, l):
            if m["unet_skips"] and l < enc:
                skips.append(x)
            continue
        if takes_unet_skip(m, l):
            i = l - enc  # decoder i adds the output of encoder block enc-1-i (a stack, as in the speedrun)
            w = P["skip_weights"][i]
            x = x + (torch.sigmoid(w) if m.get("unet_skip_gate", "none") == "sigmoid" else w) * skips[enc - 1 - i]
        if m["x0_shortcut"]:
            lam = P[b + "x0_lambdas"]
            x = lam[0] * x + lam[1] * x0
        if has_attention(m, l):
            x = x + attend(norm(x, b + "norm1"), l, b)
        if not has_mlp(m, l):
            if m["unet_skips"] and l < enc:
                skips.append(x)
            continue
        h = F.linear(norm(x, b + "norm2"), P[b + "mlp.fc.weight"], P.get(b + "mlp.fc.bias"))
        h = F.gelu(h, approximate="tanh") if m["activation"] == "gelu" else F.relu(h).square()
        x = x + F.linear(h, P[b + "mlp.proj.weight"], P.get(b + "mlp.proj.bias"))
        if m["unet_skips"] and l < enc:
            skips.append(x)
    if backout >= 0:
        x = x - P["backout.lambda"] * x_backout
    x = norm(x, "final_norm")
    head = P["tok_embed"] if m["tie_embeddings"] else P["lm_head"]
    logits = F.linear(x, head)
    cap = m["logit_softcap"]
    capped = cap * torch.tanh(logits / cap) if cap > 0 else logits
    return logits, capped


def default_attention(m):
    D = m["d_model"] // m["n_head"]
    scale = m["attn_scale"] if m["attn_scale"] is not None else 1.0 / math.sqrt(D)
    freqs = rope_frequencies(m.get("rope_base", 10000.0), D, m.get("rope_frequencies", "standard"))
    return {"windows": list(m.get("attn_window", [])), "scale": scale, "freqs": freqs}


def stage_attention(cfg, step, steps):
    """Attention settings at `step` under schedule.window_stages, transcribed from record #31's
    training loop (get_ws, apply_yarn, attn_scales), with windows in tokens instead of 128-blocks."""
    m, st = cfg["model"], cfg["schedule"].get("window_stages")
    att = default_attention(m)
    if not st or not st.get("windows"):
        return att
    stages = st["windows"]
    validate = st.get("final_eval") or stages[-1]

    scheduled = steps - cfg["schedule"].get("extension_steps", 0)  # record #35's iteration_extension

    def get_ws(s):
        return validate if s == steps else stages[int(len(stages) * min(s / (1 + scheduled), 0.9999))]

    freqs = att["freqs"].clone()
    ws = get_ws(0)
    for s in range(step + 1):  # the record's loop: apply_yarn whenever the window changes
        new_ws = get_ws(s)
        if new_ws != ws:
            if st.get("yarn", False):
                alpha, beta = st.get("yarn_alpha", 1.0), st.get("yarn_beta", 32.0)
                rotations = ws * freqs / (2 * torch.pi)
                ratio = ws / new_ws
                weight = torch.clamp((rotations - alpha) / (beta - alpha), 0, 1)
                freqs = freqs * (ratio + weight * (1 - ratio))
            ws = new_ws
    windows = list(dict.fromkeys(stages + [validate]))
    factors = [st.get("scale_log_factor", 0.0) * math.log(cur / prev) + 1 for prev, cur in zip(windows[:-1], windows[1:])]
    scales = dict(zip(windows, itertools.accumulate([att["scale"]] + factors, lambda acc, f: acc * f)))
    unit = st.get("multiple") or max(1, m.get("window_block", 0))
    longest = max(m["attn_window"])
    n = ws // unit
    layer_windows = [0 if w == 0 else unit * max(1, n * w // longest) for w in m["attn_window"]]
    if step == steps:  # record #33's ws_validate_final_layer: some layers get their own final window
        layer_windows = [f or w for f, w in zip(st.get("final_eval_windows") or [0] * len(layer_windows), layer_windows)]
    return {"windows": layer_windows, "scale": scales[ws], "freqs": freqs}


def loss_fn(P, m, tokens, targets, doc_ids=None, att=None):
    logits, capped = forward(P, m, tokens, doc_ids, att)
    V = m["vocab_size"] if m["mask_padded_logits"] else m["padded_vocab_size"]
    loss = F.cross_entropy(capped[..., :V].reshape(-1, V), targets.reshape(-1))
    return logits, loss

# ---------------------------------------------------------------------------
# Optimizers
# ---------------------------------------------------------------------------

def lr_factor(s, step, total):
    if step < s["warmup_steps"]:
        return (step + 1) / s["warmup_steps"]
    total -= s.get("extension_steps", 0)  # extension steps run at the final value
    step = min(step, total)
    final = s["final_lr_frac"]
    if s["kind"] == "constant":
        return 1.0
    if s["kind"] == "wsd":
        x = step / total
        if s["cooldown_frac"] <= 0 or x < 1 - s["cooldown_frac"]:
            return 1.0
        w = (1 - x) / s["cooldown_frac"]
        return w + (1 - w) * final
    p = min(max((step - s["warmup_steps"]) / max(1, total - s["warmup_steps"]), 0.0), 1.0)
    if s["kind"] == "cosine":
        return final + (1 - final) * 0.5 * (1 + math.cos(math.pi * p))
    return 1 + (final - 1) * p


def ns_table(ns):
    if ns["coefficients"] == "quintic":
        base = [(3.4445, -4.7750, 2.0315)]
    elif ns["coefficients"] == "polar_express":
        base = POLAR_EXPRESS
    else:
        base = [tuple(r) for r in ns["custom"]]
    return [base[min(i, len(base) - 1)] for i in range(ns["steps"])]


def newton_schulz(G, ns):
    X = G / (ns["norm_scale"] * G.norm() + ns["norm_eps"])
    tall = X.shape[0] > X.shape[1]
    if tall:
        X = X.T
    for a, b, c in ns_table(ns):
        A = X @ X.T
        Bm = b * A + c * (A @ A)
        X = a * X + Bm @ X
    return X.T if tall else X


def update_scale(mode, rows, cols):
    return {"original": math.sqrt(max(1.0, rows / cols)),
            "match_rms_adamw": 0.2 * math.sqrt(max(rows, cols)),
            "sqrt_max_dim": math.sqrt(max(rows, cols)),
            "none": 1.0}[mode]


def muon_blocks(name, shape, g, n_head):
    """Row blocks (first row, rows) orthogonalised separately: the fused qkv's
    three parts, or with per_head one block per heads_per_block heads of the
    attention q/k (and v for "qkv") matrices."""
    rows, cols = shape
    per = g.get("per_head", "none")
    heads_qk, heads_v = per in ("qk", "qkv"), per == "qkv"

    def part(r0, n, heads):
        if not heads:
            return [(r0, n)]
        br = cols // n_head * g.get("heads_per_block", 1)
        return [(r0 + r, br) for r in range(0, n, br)]

    if per != "none" and name.endswith("attn.qkv.weight"):
        C = rows // 3
        return part(0, C, heads_qk) + part(C, C, heads_qk) + part(2 * C, C, heads_v)
    if per != "none" and (name.endswith("attn.q.weight") or name.endswith("attn.k.weight")):
        return part(0, rows, heads_qk)
    if per != "none" and name.endswith("attn.v.weight"):
        return part(0, rows, heads_v)
    nb = 3 if name.endswith("attn.qkv.weight") else 1
    return [(i * rows // nb, rows // nb) for i in range(nb)]


def normuon_per_row(nm, rows, cols):
    return {"rows": True, "cols": False}.get(nm.get("axis", "auto"), rows >= cols)


def normuon(O, v, beta2, per_row):
    """NorMuon variance reduction, as modded-nanogpt's
    _apply_normuon_variance_reduction (train_gpt.py @ f411b3d): per-row (or
    per-column) EMA of the mean square, divide by its root, keep ||O||_F."""
    red_dim = -1 if per_row else -2
    v_mean = O.square().mean(dim=red_dim, keepdim=True)
    red = O.size(red_dim)
    v_norm = (v_mean.sum() * red).sqrt()
    v.lerp_(v_mean, 1 - beta2)
    step = v.clamp_min(1e-10).rsqrt()
    v_norm_new = ((v_mean * red) * step.square()).sum().sqrt()
    return O * (step * (v_norm / v_norm_new.clamp_min(1e-10)))


class Muon:
    def __init__(self, named_params, group, n_head=0):
        self.params = named_params
        self.g = group
        self.n_head = n_head
        self.buf = {n: torch.zeros_like(p) for n, p in named_params}
        self.blocks = {n: muon_blocks(n, tuple(p.shape), group, n_head) for n, p in named_params}
        nm = group.get("normuon", {})
        self.nv = {}  # NorMuon second moment per (param, block)
        if nm.get("enabled", False):
            for n, p in named_params:
                for r0, rows in self.blocks[n]:
                    shape = (rows, 1) if normuon_per_row(nm, rows, p.shape[1]) else (1, p.shape[1])
                    self.nv[(n, r0)] = torch.zeros(shape)

    def normuon_state(self, name):
        return torch.cat([self.nv[(name, r0)].reshape(-1) for r0, _ in self.blocks[name]])

    @torch.no_grad()
    def step(self, step, lr):
        g = self.g
        mu = g.get("momentum", 0.95)
        start, warm = g.get("momentum_warmup_start", 0.0), g.get("momentum_warmup_steps", 0)
        if warm > 0 and start > 0:
            frac = min(1.0, step / warm)
            mu = (1 - frac) * start + frac * mu
        for name, p in self.params:
            grad, buf = p.grad, self.buf[name]
            if g.get("momentum_form", "ema") == "ema":
                buf.lerp_(grad, 1 - mu)
                u = grad.lerp(buf, mu) if g.get("nesterov", True) else buf.clone()
            else:
                buf.mul_(mu).add_(grad)
                u = grad + mu * buf if g.get("nesterov", True) else buf.clone()
            nm = g.get("normuon", {})
            wd = g.get("weight_decay", 0.0)
            for r0, rows in self.blocks[name]:
                sl = slice(r0, r0 + rows)
                o = newton_schulz(u[sl], g["ns"])
                if nm.get("enabled", False):
                    o = normuon(o, self.nv[(name, r0)], nm.get("beta2", 0.95), normuon_per_row(nm, rows, p.shape[1]))
                s = update_scale(g["update_scale"], rows, p.shape[1])
                cautious = g.get("cautious_weight_decay", False)
                if g.get("weight_decay_schedule", "lr") == "lr_squared":
                    # speedrun CWD records: p -= (lr*s) * (o + (wd*lr) * mask * p)
                    decay = (lr * s) * (wd * lr)
                else:
                    decay = lr * wd
                if cautious:
                    # Cautious WD (arXiv 2510.12402; speedrun: mask = (v_chunk * param_chunk) >= 0)
                    mask = (o * p[sl] >= 0).to(p.dtype)
                    p[sl] = p[sl] - p[sl] * mask * decay - (lr * s) * o
                else:
                    p[sl].mul_(1 - decay)
                    p[sl].add_(o, alpha=-lr * s)


def qk_clip(P, m, max_logits, tau, alpha):
    """Kimi K2 QK-clip (arXiv 2507.20534): heads whose max logit S > tau get
    W_q (and b_q) rows *= (tau/S)^alpha, W_k (and b_k) rows *= (tau/S)^(1-alpha)."""
    C, H = m["d_model"], m["n_head"]
    D = C // H
    clipped = 0
    for l in range(m["n_layer"]):
        b = f"blocks.{l}.attn."
        if m["qkv"] == "fused":
            targets = [(b + "qkv", 0, alpha), (b + "qkv", C, 1 - alpha)]
        else:
            targets = [(b + "q", 0, alpha), (b + "k", 0, 1 - alpha)]
        for h in range(H):
            S = max_logits[l][h]
            if not S > tau:
                continue
            clipped += 1
            for prefix, r0, power in targets:
                f = (tau / S) ** power
                rows = slice(r0 + h * D, r0 + (h + 1) * D)
                P[prefix + ".weight"][rows] *= f
                if prefix + ".bias" in P:
                    P[prefix + ".bias"][rows] *= f
    return clipped

# ---------------------------------------------------------------------------
# Fixture
# ---------------------------------------------------------------------------

def build(cfg, seed):
    gen = torch.Generator().manual_seed(seed)
    params = {}
    for name, shape in param_shapes(cfg["model"]):
        # random everywhere (zero-initialised parameters too) so every path carries signal
        params[name] = (torch.rand(shape, generator=gen) * 1.2 - 0.6).requires_grad_(True)
    return params


def random_batch(cfg, gen):
    """Tokens, targets and, with model.document_mask, document ids (a new document starts with
    probability 0.3 at each position)."""
    B, T, V = cfg["batch"]["micro_batch"], cfg["batch"]["seq_len"], cfg["model"]["vocab_size"]
    seq = torch.randint(0, V, (B, T + 1), generator=gen)
    docs = None
    if cfg["model"].get("document_mask", False):
        docs = (torch.rand(B, T, generator=gen) < 0.3).cumsum(dim=1)
    return seq[:, :-1].contiguous(), seq[:, 1:].contiguous(), docs


def flat(t):
    return [float(f"{v:.12g}") for v in t.detach().reshape(-1).tolist()]


def make_fixture(name, cfg):
    m = cfg["model"]
    params = build(cfg, seed=1234)
    gen = torch.Generator().manual_seed(99)
    tokens, targets, docs = random_batch(cfg, gen)
    initial = {n: flat(p) for n, p in params.items()}

    logits, loss = loss_fn(params, m, tokens, targets, docs, stage_attention(cfg, 0, cfg["train"]["steps"]))
    loss.backward()
    grads = {n: flat(p.grad) for n, p in params.items()}

    # 10 optimizer steps on fresh batches, starting from the same initial parameters
    for p in params.values():
        p.grad = None
    groups = cfg["optim"]["groups"]
    assignment = {g["name"]: [] for g in groups}
    for pname, _ in param_shapes(m):
        for g in groups:
            if any(fnmatch.fnmatchcase(pname, pat) for pat in g["params"]):
                assignment[g["name"]].append((pname, params[pname]))
                break
    optimizers = []
    for g in groups:
        named = assignment[g["name"]]
        if not named:
            continue
        if g["type"] == "muon":
            optimizers.append((g, Muon(named, g)))
        else:
            opt = torch.optim.AdamW([p for _, p in named], lr=g["lr"], betas=tuple(g["betas"]), eps=g["eps"],
                                    weight_decay=g["weight_decay"])
            optimizers.append((g, opt))
    steps = cfg["train"]["steps"]
    batches, losses = [], []
    for step in range(steps):
        tok, tgt, step_docs = random_batch(cfg, gen)
        batches.append({"tokens": tok.reshape(-1).tolist(), "targets": tgt.reshape(-1).tolist()})
        if step_docs is not None:
            batches[-1]["doc_ids"] = step_docs.reshape(-1).tolist()
        for p in params.values():
            p.grad = None
        _, step_loss = loss_fn(params, m, tok, tgt, step_docs, stage_attention(cfg, step, steps))
        step_loss.backward()
        losses.append(float(step_loss.detach()))
        factor = lr_factor(cfg["schedule"], step, steps)
        for g, opt in optimizers:
            lr = g["lr"] * factor
            if isinstance(opt, Muon):
                opt.step(step, lr)
            else:
                for pg in opt.param_groups:
                    pg["lr"] = lr
                opt.step()

    final_eval = None
    if cfg["schedule"].get("window_stages"):  # the evaluation after the last step (final_eval window, YaRN)
        tok, tgt, eval_docs = random_batch(cfg, gen)
        with torch.no_grad():
            _, eval_loss = loss_fn(params, m, tok, tgt, eval_docs, stage_attention(cfg, steps, steps))
        final_eval = {"tokens": tok.reshape(-1).tolist(), "targets": tgt.reshape(-1).tolist(),
                      "loss": float(eval_loss)}
        if eval_docs is not None:
            final_eval["doc_ids"] = eval_docs.reshape(-1).tolist()
    fixture = {
        "about": f"generated by scripts/reference/reference.py with torch {torch.__version__} (float64)",
        "config": cfg,
        "params": initial,
        "tokens": tokens.reshape(-1).tolist(),
        "targets": targets.reshape(-1).tolist(),
        "logits": flat(logits),
        "loss": float(loss.detach()),
        "grads": grads,
        "train": {"batches": batches, "losses": losses, "final_params": {n: flat(p) for n, p in params.items()}},
    }
    if docs is not None:
        fixture["doc_ids"] = docs.reshape(-1).tolist()
    if final_eval is not None:
        fixture["final_eval"] = final_eval
    return fixture


# ---------------------------------------------------------------------------
# Muon variants fixture: a few optimizer steps on the Muon matrices of tiny
# models (no forward: the gradients are random), and QK-clip on given logits.
# ---------------------------------------------------------------------------

def variant_model(qkv="fused", n_head=2, d_model=8, bias=False):
    return {"vocab_size": 16, "padded_vocab_size": 16, "n_layer": 1, "n_head": n_head, "d_model": d_model,
            "mlp_hidden": 12, "max_seq_len": 8, "pos_embedding": "rope", "norm": "rmsnorm", "norm_weight": False,
            "embed_norm": False, "qkv": qkv, "bias": bias, "qk_norm": False, "value_residual": False,
            "x0_shortcut": False, "unet_skips": False, "tie_embeddings": True}


def muon_group(**kw):
    g = {"name": "hidden", "type": "muon", "params": ["blocks.*.attn.*.weight", "blocks.*.mlp.*.weight"],
         "lr": 0.05, "weight_decay": 0.0, "momentum": 0.9, "nesterov": True, "momentum_form": "ema",
         "update_scale": "original",
         "ns": {"coefficients": "quintic", "steps": 5, "norm_scale": 1.0, "norm_eps": 1e-7}}
    g.update(kw)
    return g


POLAR = {"coefficients": "polar_express", "steps": 5, "norm_scale": 1.02, "norm_eps": 1e-6}

MUON_VARIANTS = [
    ("update_scale_none", variant_model(), muon_group(update_scale="none", weight_decay=0.1)),
    ("normuon_auto", variant_model(), muon_group(normuon={"enabled": True, "beta2": 0.9, "axis": "auto"})),
    ("normuon_rows_polar", variant_model(), muon_group(normuon={"enabled": True, "beta2": 0.95, "axis": "rows"},
                                                        ns=POLAR)),
    ("normuon_cols", variant_model(), muon_group(normuon={"enabled": True, "beta2": 0.5, "axis": "cols"})),
    ("cautious_wd", variant_model(), muon_group(weight_decay=2.0, cautious_weight_decay=True)),
    ("wd_lr_squared", variant_model(), muon_group(weight_decay=8.0, weight_decay_schedule="lr_squared")),
    ("cautious_lr_squared_normuon", variant_model(),
     muon_group(lr=0.05, weight_decay=12.0, cautious_weight_decay=True, weight_decay_schedule="lr_squared",
                normuon={"enabled": True, "beta2": 0.9, "axis": "auto"}, ns=POLAR)),
    ("per_head_qk_fused", variant_model(), muon_group(per_head="qk")),
    ("per_head_qkv_separate", variant_model(qkv="separate"), muon_group(per_head="qkv", weight_decay=0.3)),
    ("everything", variant_model(n_head=4),
     muon_group(per_head="qk", heads_per_block=2, update_scale="match_rms_adamw", weight_decay=4.0,
                cautious_weight_decay=True, weight_decay_schedule="lr_squared", momentum_form="sum",
                normuon={"enabled": True, "beta2": 0.9, "axis": "auto"}, ns=POLAR)),
]

QK_CLIP_CASES = [
    # name, model, max logits (n_layer x n_head), tau, alpha
    ("qk_clip_fused_bias", dict(variant_model(bias=True), n_layer=2), [[150.0, 20.0], [99.0, 1000.0]], 100.0, 0.5),
    ("qk_clip_separate", dict(variant_model(qkv="separate", n_head=4), n_layer=1), [[5.0, 7.5, 3.0, 12.0]], 4.0,
     0.3),
]


def short_rand(shape, gen, normal=False):
    """Random values rounded to 4 decimals (the rounded values are the inputs, so the file stays small)."""
    x = torch.randn(shape, generator=gen) if normal else torch.rand(shape, generator=gen) * 1.2 - 0.6
    return torch.round(x * 1e4) / 1e4


def muon_variants_fixture():
    gen = torch.Generator().manual_seed(4321)
    steps = 3
    schedule = {"kind": "linear", "warmup_steps": 0, "cooldown_frac": 0.0, "final_lr_frac": 0.4}
    inputs = {}  # initial matrices and per-step gradients, shared by the cases of one parameter layout
    cases = []
    for name, model, group in MUON_VARIANTS:
        cfg = {"model": model, "schedule": schedule, "train": {"steps": steps},
               "optim": {"groups": [group, adam_group("rest", ["*"], 0.0)]}}
        shapes = [(pname, shape) for pname, shape in param_shapes(model)
                  if len(shape) == 2 and any(fnmatch.fnmatchcase(pname, pat) for pat in group["params"])]
        key = model["qkv"]
        if key not in inputs:
            inputs[key] = {"params": {n: short_rand(shape, gen) for n, shape in shapes},
                           "grads": [{n: short_rand(shape, gen, normal=True) for n, shape in shapes}
                                     for _ in range(steps)]}
        named = [(n, inputs[key]["params"][n].clone()) for n, _ in shapes]
        opt = Muon(named, group, model["n_head"])
        for step in range(steps):
            for n, p in named:
                p.grad = inputs[key]["grads"][step][n]
            opt.step(step, group["lr"] * lr_factor(schedule, step, steps))
        state = {}
        if group.get("normuon", {}).get("enabled", False):
            state.update({n + ".normuon_v": flat(opt.normuon_state(n)) for n, _ in named})
        cases.append({"name": name, "config": cfg, "inputs": key, "final_params": {n: flat(p) for n, p in named},
                      "final_state": state})
    inputs = {k: {"params": {n: flat(p) for n, p in v["params"].items()},
                  "grads": [{n: flat(g) for n, g in step.items()} for step in v["grads"]]}
              for k, v in inputs.items()}
    clips = []
    for name, model, logits, tau, alpha in QK_CLIP_CASES:
        P = {pname: short_rand(shape, gen) for pname, shape in param_shapes(model)
             if ".attn." in pname and pname.split(".")[-2] in ("qkv", "q", "k", "v")}
        initial = {n: flat(p) for n, p in P.items()}
        clipped = qk_clip(P, model, logits, tau, alpha)
        clips.append({"name": name, "model": model, "max_logits": logits, "tau": tau, "alpha": alpha,
                      "params": initial, "clipped_params": {n: flat(p) for n, p in P.items()},
                      "clipped_heads": clipped})
    return {"about": f"generated by scripts/reference/reference.py with torch {torch.__version__} (float64)",
            "steps": steps, "inputs": inputs, "muon": cases, "qk_clip": clips}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--check", action="store_true", help="regenerate in memory and compare with the committed files")
    ap.add_argument("--out", default=FIXTURE_DIR, help="fixture directory")
    ap.add_argument("--only", choices=list(CONFIGS) + ["muon_variants"], help="one fixture only")
    args = ap.parse_args()
    os.makedirs(args.out, exist_ok=True)
    status = 0
    for name, cfg in CONFIGS.items():
        if args.only and args.only != name:
            continue
        fixture = make_fixture(name, cfg)
        path = os.path.join(args.out, f"{name}.json")
        text = json.dumps(fixture, separators=(",", ":")) + "\n"
        if args.check:
            same = os.path.exists(path) and json.load(open(path))["loss"] == fixture["loss"]
            print(f"{path}: {'matches' if same else 'DIFFERS'}")
            status |= 0 if same else 1
        else:
            with open(path, "w") as f:
                f.write(text)
            print(f"wrote {path} ({len(text) / 1024:.0f} KiB): loss {fixture['loss']:.6f}, "
                  f"10-step losses {fixture['train']['losses'][0]:.4f} -> {fixture['train']['losses'][-1]:.4f}")
    if not args.only or args.only == "muon_variants":
        fixture = muon_variants_fixture()
        path = os.path.join(args.out, "muon_variants.json")
        text = json.dumps(fixture, separators=(",", ":")) + "\n"
        if args.check:
            old = json.load(open(path)) if os.path.exists(path) else None
            same = old is not None and all(
                a["final_params"] == b["final_params"] for a, b in zip(old["muon"], fixture["muon"]))
            print(f"{path}: {'matches' if same else 'DIFFERS'}")
            status |= 0 if same else 1
        else:
            with open(path, "w") as f:
                f.write(text)
            print(f"wrote {path} ({len(text) / 1024:.0f} KiB): {len(fixture['muon'])} Muon variants, "
                  f"{len(fixture['qk_clip'])} QK-clip cases")
    return status


if __name__ == "__main__":
    sys.exit(main())
