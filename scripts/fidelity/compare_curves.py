#!/usr/bin/env python3
"""Compare the loss curves of the modded-nanogpt record #5 script and of muongpt (fidelity run).

Inputs:
  --record-log  the record script's output (its stdout, or its logs/<run id>.txt; only lines
                containing `step:N/M train_loss:X ...` and `step:N/M val_loss:X ...` are used,
                `Running pytorch V compiled for CUDA C` gives the PyTorch version)
  --ours        muongpt's run directory (metrics.jsonl: {"step","train_loss",...} per step,
                {"step","val_loss",...} per evaluation; summary.json if present) or metrics.jsonl

Both count steps the same way: the train loss of step N is the loss of the N-th optimizer step's
batch, computed before that step's update; the val loss at step N is after N updates (N = 0:
the untrained model).

Writes into --out (default records/<UTC date>_modernarch_fidelity/):
  curves.csv   step, both train losses, both smoothed train losses, both val losses
  plot.png     train losses (raw, smoothed) and val points; difference of the smoothed curves
               (needs matplotlib; skipped with a note in summary.md when it is missing; rerun
               this script where it is installed, on the logs the run copied to $OUT/fidelity/)
  summary.md   mean / max |difference| of the smoothed train curves over the last --last steps,
               final val losses, the commands, device, date

Smoothing: trailing moving average over --smooth steps (default 29 = one pass over
data/tiny/train_000000.bin at 65,536 tokens per step, so both smoothed curves average over the
same batches even though the record trains on batch k-1 at step k).

  python3 scripts/fidelity/compare_curves.py --selftest     # fabricated logs, checks parsing and outputs
"""

import argparse
import csv
import datetime
import json
import math
import os
import re
import shutil
import subprocess
import sys
import tempfile

REPO_ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
LINE_RE = re.compile(r"step:(\d+)/(\d+) (train_loss|val_loss):([-+]?(?:\d+\.?\d*(?:[eE][-+]?\d+)?|nan|inf))")
TORCH_RE = re.compile(r"Running pytorch (\S+) compiled for CUDA (\S+)")


def parse_record_log(path):
    """Returns dict(train={step: loss}, val={step: loss}, total=M or None, torch=str or None)."""
    train, val, total, torch_version = {}, {}, None, None
    with open(path, encoding="utf-8", errors="replace") as f:
        for line in f:
            m = TORCH_RE.search(line)
            if m:
                torch_version = f"{m.group(1)} (CUDA {m.group(2)})"
            m = LINE_RE.search(line)
            if not m:
                continue
            step, total = int(m.group(1)), int(m.group(2))
            (train if m.group(3) == "train_loss" else val)[step] = float(m.group(4))
    return {"train": train, "val": val, "total": total, "torch": torch_version}


def parse_ours(path):
    """Returns dict(train, val, summary) from a run directory or a metrics.jsonl."""
    metrics = os.path.join(path, "metrics.jsonl") if os.path.isdir(path) else path
    train, val = {}, {}
    with open(metrics, encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            line = line.strip()
            if not line:
                continue
            try:
                rec = json.loads(line)
            except json.JSONDecodeError:
                print(f"warning: {metrics}:{n}: not JSON, skipped (a run killed while writing?)", file=sys.stderr)
                continue
            if "train_loss" in rec:
                train[int(rec["step"])] = float(rec["train_loss"])
            if "val_loss" in rec:
                val[int(rec["step"])] = float(rec["val_loss"])
    summary = None
    summary_path = os.path.join(os.path.dirname(metrics), "summary.json")
    if os.path.exists(summary_path):
        with open(summary_path, encoding="utf-8") as f:
            summary = json.load(f)
    return {"train": train, "val": val, "summary": summary}


def smooth(series, window):
    """Trailing moving average over the last `window` steps present (steps s-window+1 .. s)."""
    steps = sorted(series)
    out = {}
    for s in steps:
        vals = [series[t] for t in range(s - window + 1, s + 1) if t in series]
        out[s] = sum(vals) / len(vals)
    return out


def diff_stats(a, b, steps):
    d = [abs(a[s] - b[s]) for s in steps if s in a and s in b]
    if not d:
        return None
    return {"n": len(d), "mean": sum(d) / len(d), "max": max(d), "signed_mean": sum(b[s] - a[s] for s in steps if s in a and s in b) / len(d)}


def device_name():
    exe = shutil.which("nvidia-smi")
    if not exe:
        return "no GPU found (nvidia-smi not on PATH)"
    r = subprocess.run([exe, "--query-gpu=name,driver_version,memory.total", "--format=csv,noheader"],
                       capture_output=True, text=True)
    names = [l.strip() for l in r.stdout.splitlines() if l.strip()]
    return "; ".join(names) if r.returncode == 0 and names else "unknown (nvidia-smi failed)"


def our_commit():
    try:
        r = subprocess.run(["git", "-C", REPO_ROOT, "rev-parse", "--short", "HEAD"], capture_output=True, text=True)
        if r.returncode != 0:
            return "unknown (no git repository here)"
        dirty = subprocess.run(["git", "-C", REPO_ROOT, "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True).stdout.strip()
        return r.stdout.strip() + (" + uncommitted changes" if dirty else "")
    except OSError:
        return "unknown (git not installed)"


def fmt(x, nd=4):
    return "" if x is None else (f"{x:.{nd}f}" if math.isfinite(x) else str(x))


def write_csv(path, rec, ours, rec_s, ours_s):
    steps = sorted(set(rec["train"]) | set(ours["train"]) | set(rec["val"]) | set(ours["val"]))
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["step", "record_train_loss", "ours_train_loss", "record_train_smooth", "ours_train_smooth",
                    "record_val_loss", "ours_val_loss"])
        for s in steps:
            w.writerow([s] + [fmt(d.get(s), 6) for d in (rec["train"], ours["train"], rec_s, ours_s, rec["val"], ours["val"])])
    return len(steps)


def write_plot(path, rec, ours, rec_s, ours_s, window, title):
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as e:
        return f"plot.png not written: matplotlib is not installed ({e}); rerun compare_curves.py where it is"
    fig, (ax, axd) = plt.subplots(2, 1, figsize=(10, 8), sharex=True, gridspec_kw={"height_ratios": [3, 1.3]})
    for d, sm, val, name, color in ((rec["train"], rec_s, rec["val"], "record #5 script (PyTorch)", "tab:blue"),
                                    (ours["train"], ours_s, ours["val"], "muongpt", "tab:orange")):
        if d:
            xs = sorted(d)
            ax.plot(xs, [d[s] for s in xs], color=color, alpha=0.25, lw=0.8, label=f"{name}: train loss")
            ax.plot(xs, [sm[s] for s in xs], color=color, lw=2, label=f"{name}: train, moving average {window}")
        if val:
            xs = sorted(val)
            ax.plot(xs, [val[s] for s in xs], "o--", color=color, ms=5, lw=1, label=f"{name}: val loss")
    late = [v for sm in (rec_s, ours_s) for s, v in sm.items() if s >= 10] + \
           [v for val in (rec["val"], ours["val"]) for s, v in val.items() if s >= 10]
    if late:
        lo, hi = min(late), max(late)
        ax.set_ylim(lo - 0.1 * (hi - lo) - 0.05, hi + 0.25 * (hi - lo) + 0.05)
    ax.set_ylabel("loss (nats/token)")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    common = sorted(set(rec_s) & set(ours_s))
    if common:
        axd.plot(common, [ours_s[s] - rec_s[s] for s in common], color="k", lw=1.5, label="smoothed train: muongpt - record")
    vcommon = sorted(set(rec["val"]) & set(ours["val"]))
    if vcommon:
        axd.plot(vcommon, [ours["val"][s] - rec["val"][s] for s in vcommon], "s", color="tab:red", ms=5,
                 label="val: muongpt - record")
    axd.axhline(0, color="gray", lw=0.8)
    axd.set_xlabel("step")
    axd.set_ylabel("difference")
    axd.grid(alpha=0.3)
    axd.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return None


def build_summary(a, rec, ours, rec_s, ours_s, plot_note, date):
    lines = []
    rec_steps, our_steps = sorted(rec["train"]), sorted(ours["train"])
    last_common = max(set(rec_steps) & set(our_steps)) if set(rec_steps) & set(our_steps) else None
    expected = a.steps or rec["total"]
    lines.append("# Fidelity run: muongpt vs modded-nanogpt record #5 (ModernArch)")
    lines.append("")
    problems = []
    if expected:
        if not rec_steps or rec_steps[-1] < expected:
            problems.append(f"the record script's log ends at step {rec_steps[-1] if rec_steps else 0} of {expected}")
        if not our_steps or our_steps[-1] < expected:
            problems.append(f"muongpt's metrics end at step {our_steps[-1] if our_steps else 0} of {expected}")
    if problems:
        lines.append("**INCOMPLETE:** " + "; ".join(problems) + " (timeout or failure; see the run logs).")
        lines.append("")
    lines.append(f"- date: {date}")
    lines.append(f"- device: {a.device_name or device_name()}")
    lines.append(f"- record script: modded-nanogpt `records/track_1_short/2024-10-14_ModernArch` (log "
                 f"`dabaaddd-237c-4ec9-939d-6608a9ed5e27.txt`), patched by `scripts/fidelity/extract_record.py`; "
                 f"PyTorch {rec['torch'] or 'version not in the log'}")
    summ = ours.get("summary") or {}
    lines.append(f"- muongpt: commit {a.commit or our_commit()}"
                 + (f", device `{summ.get('device')}`, {summ.get('tokens_per_s', 0):,.0f} tokens/s" if summ else ""))
    for note in a.note or []:
        lines.append(f"- {note}")
    lines.append("")
    lines.append("## Commands")
    lines.append("")
    lines.append("```")
    lines.append(f"# record script\n{a.record_cmd or '(not given)'}")
    lines.append(f"# muongpt\n{a.ours_cmd or '(not given)'}")
    lines.append(f"# comparison\n{a.compare_cmd}")
    lines.append("```")
    lines.append("")
    lines.append("## Train loss")
    lines.append("")
    lines.append(f"Smoothing: trailing moving average over {a.smooth} steps. Differences are muongpt minus record.")
    lines.append("")
    lines.append("| quantity | steps | n | mean abs diff | max abs diff | mean signed diff |")
    lines.append("|---|---|---|---|---|---|")
    if last_common is not None:
        window = [s for s in range(last_common - a.last + 1, last_common + 1)]
        for label, x, y in (("smoothed train loss", rec_s, ours_s), ("raw train loss", rec["train"], ours["train"])):
            st = diff_stats(x, y, window)
            if st:
                lines.append(f"| {label} | {window[0]}..{window[-1]} | {st['n']} | {st['mean']:.4f} | {st['max']:.4f} | "
                             f"{st['signed_mean']:+.4f} |")
        st = diff_stats(rec_s, ours_s, sorted(set(rec_s) & set(ours_s)))
        lines.append(f"| smoothed train loss | all common | {st['n']} | {st['mean']:.4f} | {st['max']:.4f} | "
                     f"{st['signed_mean']:+.4f} |")
        lines.append("")
        lines.append(f"At step {last_common}: record train {rec['train'][last_common]:.4f} (smoothed "
                     f"{rec_s[last_common]:.4f}), muongpt train {ours['train'][last_common]:.4f} (smoothed "
                     f"{ours_s[last_common]:.4f}).")
    else:
        lines.append("| (no common steps) | | | | | |")
    lines.append("")
    lines.append("## Validation loss")
    lines.append("")
    lines.append("| step | record | muongpt | diff |")
    lines.append("|---|---|---|---|")
    for s in sorted(set(rec["val"]) | set(ours["val"])):
        r, o = rec["val"].get(s), ours["val"].get(s)
        lines.append(f"| {s} | {fmt(r)} | {fmt(o)} | {f'{o - r:+.4f}' if r is not None and o is not None else ''} |")
    lines.append("")
    fr = rec["val"][max(rec["val"])] if rec["val"] else None
    fo = ours["val"][max(ours["val"])] if ours["val"] else None
    lines.append(f"Final val loss: record {fmt(fr)} (step {max(rec['val']) if rec['val'] else '-'}), "
                 f"muongpt {fmt(fo)} (step {max(ours['val']) if ours['val'] else '-'})"
                 + (f", difference {fo - fr:+.4f}." if fr is not None and fo is not None else "."))
    lines.append("")
    lines.append("## Known differences (docs/speedrun.md, \"Fidelity gaps\" and \"Fidelity run\")")
    lines.append("")
    lines.append("- Data order: unless the record script was patched with `--align-data-order`, it trains on its first "
                 "batch twice (a `train_loader.reset()` after reading it), so its step N uses the batch of muongpt's "
                 "step N-1. Per-step train losses therefore compare different batches; with a window of 29 steps (one "
                 "pass over data/tiny) both smoothed curves average over the same batches.")
    lines.append("- Initialisation: different random streams; the record's tied embedding/head is uniform(+-1/sqrt(768)), "
                 "muongpt's a normal of the same std.")
    lines.append("- Numerics: the record runs bf16 autocast under torch.compile and applies Muon's Newton-Schulz output in "
                 "bf16; muongpt has its own bf16 kernels with fp32 master weights.")
    lines.append("- This is a 200-step run on data/tiny (1.9M training tokens, about 7 passes), not FineWeb: it tests "
                 "that both engines train the same way, not the record's 3.28.")
    if plot_note:
        lines.append("")
        lines.append(f"Note: {plot_note}.")
    lines.append("")
    return "\n".join(lines), problems


def run(a):
    rec = parse_record_log(a.record_log)
    ours = parse_ours(a.ours)
    if not rec["train"]:
        sys.exit(f"compare_curves.py: error: no `step:N/M train_loss:X` lines in {a.record_log}")
    if not ours["train"]:
        sys.exit(f"compare_curves.py: error: no train_loss rows in {a.ours}")
    date = a.date or datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d")
    out = a.out or os.path.join(REPO_ROOT, "records", f"{date}_modernarch_fidelity")
    os.makedirs(out, exist_ok=True)
    rec_s, ours_s = smooth(rec["train"], a.smooth), smooth(ours["train"], a.smooth)
    n = write_csv(os.path.join(out, "curves.csv"), rec, ours, rec_s, ours_s)
    plot_note = write_plot(os.path.join(out, "plot.png"), rec, ours, rec_s, ours_s, a.smooth,
                           "ModernArch fidelity run: record #5 script vs muongpt")
    text, problems = build_summary(a, rec, ours, rec_s, ours_s, plot_note, date)
    with open(os.path.join(out, "summary.md"), "w") as f:
        f.write(text)
    print(f"wrote {out}/curves.csv ({n} steps), {'plot.png, ' if not plot_note else ''}summary.md")
    if plot_note:
        print(f"warning: {plot_note}", file=sys.stderr)
    for p in problems:
        print(f"warning: {p}", file=sys.stderr)
    return out


# ----------------------------------------------------------------------------------------------
# self-test: fabricated logs in a temporary directory

def _fake_loss(step, offset=0.0):
    return round(10.8 * math.exp(-step / 30) + 3.5 + 0.15 * math.sin(step * 1.7) + offset, 4)


def selftest(keep=None):
    tmp = tempfile.mkdtemp(prefix="fidelity_selftest_")
    try:
        steps = 200
        rec_log = os.path.join(tmp, "record_stdout.log")
        with open(rec_log, "w") as f:  # what the record script and torchrun print, in their exact formats
            f.write("W1122 10:00:00.000000 123 torch/distributed/run.py:766] *****\n")
            f.write("using device: cuda:0\n")
            f.write("Running pytorch 2.11.0+cu128 compiled for CUDA 12.8\nnvidia-smi:\n| NVIDIA H100 80GB HBM3 |\n")
            f.write("=" * 100 + "\n")
            f.write("Training DataLoader: total number of tokens: 1916724 across 1 files\n")
            for s in range(steps + 1):
                if s % 25 == 0:
                    f.write(f"step:{s}/{steps} val_loss:{_fake_loss(s, 0.2):.4f} train_time:{s * 150}ms step_avg:nanms\n")
                if s < steps:
                    prefix = "[rank0]: " if s == 7 else ""
                    f.write(f"{prefix}step:{s + 1}/{steps} train_loss:{_fake_loss(s + 1):.4f} "
                            f"train_time:{(s + 1) * 150}ms step_avg:{150.0:.2f}ms\n")
            f.write("peak memory consumption: 40000 MiB\n")
        run_dir = os.path.join(tmp, "ours")
        os.makedirs(run_dir)
        with open(os.path.join(run_dir, "metrics.jsonl"), "w") as f:
            f.write(json.dumps({"step": 0, "val_loss": _fake_loss(0, 0.2) + 0.01, "elapsed_s": 1.0}) + "\n")
            for s in range(1, steps + 1):
                f.write(json.dumps({"step": s, "train_loss": _fake_loss(s) + 0.01, "lr_factor": 1.0, "grad_norm": 1.0,
                                    "tokens": s * 65536, "step_ms": 100.0, "tokens_per_s": 655360.0}) + "\n")
                if s % 25 == 0:
                    f.write(json.dumps({"step": s, "val_loss": _fake_loss(s, 0.2) + 0.01, "elapsed_s": s * 0.1}) + "\n")
        with open(os.path.join(run_dir, "summary.json"), "w") as f:
            json.dump({"device": "cuda", "tokens_per_s": 655360.0, "final_val_loss": _fake_loss(steps, 0.2) + 0.01}, f)

        # parsing
        rec = parse_record_log(rec_log)
        assert sorted(rec["train"]) == list(range(1, steps + 1)), "record train steps"
        assert sorted(rec["val"]) == list(range(0, steps + 1, 25)), "record val steps"
        assert rec["train"][8] == _fake_loss(8), "a prefixed line ([rank0]:) is parsed"
        assert rec["total"] == steps and rec["torch"] == "2.11.0+cu128 (CUDA 12.8)", rec["torch"]
        ours = parse_ours(run_dir)
        assert len(ours["train"]) == steps and len(ours["val"]) == 9 and ours["summary"]["device"] == "cuda"
        sm = smooth({1: 1.0, 2: 3.0, 3: 5.0, 5: 7.0}, 2)
        assert sm == {1: 1.0, 2: 2.0, 3: 4.0, 5: 7.0}, sm

        # outputs
        out = os.path.join(tmp, "record_out")
        args = argparse.Namespace(record_log=rec_log, ours=run_dir, out=out, smooth=29, last=100, steps=steps,
                                  record_cmd="torchrun ... train_gpt2_fidelity.py", ours_cmd="muongpt train ...",
                                  compare_cmd="compare_curves.py --selftest", device_name="selftest device",
                                  commit="selftest", date="2000-01-01", note=["selftest note"])
        run(args)
        with open(os.path.join(out, "curves.csv")) as f:
            rows = list(csv.DictReader(f))
        assert len(rows) == steps + 1 and rows[0]["step"] == "0" and rows[0]["record_train_loss"] == ""
        assert abs(float(rows[0]["ours_val_loss"]) - float(rows[0]["record_val_loss"]) - 0.01) < 1e-9
        r200 = rows[-1]
        assert abs(float(r200["ours_train_smooth"]) - float(r200["record_train_smooth"]) - 0.01) < 1e-6
        summary = open(os.path.join(out, "summary.md")).read()
        for needle in ("| smoothed train loss | 101..200 | 100 | 0.0100 | 0.0100 | +0.0100 |", "| 200 | 3.8113 | 3.8213 | +0.0100 |",
                       f"Final val loss: record {_fake_loss(steps, 0.2):.4f} (step 200)", "selftest device",
                       "2.11.0+cu128", "muongpt train ...", "selftest note"):
            assert needle in summary, f"summary.md lacks {needle!r}:\n{summary}"
        assert "INCOMPLETE" not in summary
        has_mpl = True
        try:
            import matplotlib  # noqa: F401
        except ImportError:
            has_mpl = False
        if has_mpl:
            assert os.path.getsize(os.path.join(out, "plot.png")) > 10000, "plot.png written"
        else:
            assert "matplotlib is not installed" in summary
            print("selftest: matplotlib missing, plot.png skipped (checked the note)")

        # the command line with --meta (what run_modernarch.sh writes), flags overriding it
        meta = os.path.join(tmp, "meta.json")
        with open(meta, "w") as f:
            json.dump({"record_cmd": "META record cmd", "ours_cmd": "META ours cmd", "device_name": "META device",
                       "commit": "META commit", "date": "2000-01-02", "steps": steps, "notes": ["META note"]}, f)
        out_meta = os.path.join(tmp, "meta_out")
        r = subprocess.run([sys.executable, os.path.abspath(__file__), "--record-log", rec_log, "--ours", run_dir,
                            "--out", out_meta, "--meta", meta, "--commit", "FLAG commit", "--note", "FLAG note"],
                           capture_output=True, text=True)
        assert r.returncode == 0, r.stderr
        summary = open(os.path.join(out_meta, "summary.md")).read()
        for needle in ("META record cmd", "META ours cmd", "META device", "commit FLAG commit", "- META note\n- FLAG note",
                       "date: 2000-01-02", "--meta"):
            assert needle in summary, f"summary.md (--meta) lacks {needle!r}:\n{summary}"

        # a run cut short (timeout): still written, flagged
        short_log = os.path.join(tmp, "short.log")
        with open(rec_log) as f, open(short_log, "w") as g:
            g.writelines(l for l in f if not re.search(r"step:(1[2-9]\d|200)/", l))
        args.record_log, args.out = short_log, os.path.join(tmp, "short_out")
        print("selftest: a log cut at step 119 (the warning below is expected)")
        run(args)
        summary = open(os.path.join(args.out, "summary.md")).read()
        assert "**INCOMPLETE:** the record script's log ends at step 119 of 200" in summary, summary[:400]
        print(f"selftest: OK ({'plot checked' if has_mpl else 'no matplotlib'}" + (f"; outputs copied to {keep})" if keep else ")"))
    finally:
        if keep:
            shutil.copytree(tmp, keep, dirs_exist_ok=True)
        shutil.rmtree(tmp, ignore_errors=True)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--record-log", help="the record script's stdout or log file")
    p.add_argument("--ours", help="muongpt run directory (or its metrics.jsonl)")
    p.add_argument("--out", help="output directory (default records/<UTC date>_modernarch_fidelity)")
    p.add_argument("--smooth", type=int, default=29, help="moving-average window in steps (default 29)")
    p.add_argument("--last", type=int, default=100, help="steps at the end over which differences are summarised")
    p.add_argument("--steps", type=int, default=None, help="expected steps (default: M of the record's step:N/M)")
    p.add_argument("--record-cmd", default=None, help="command that ran the record script (for summary.md)")
    p.add_argument("--ours-cmd", default=None, help="command that ran muongpt (for summary.md)")
    p.add_argument("--device-name", default=None, help="device for summary.md (default: from nvidia-smi)")
    p.add_argument("--commit", default=None, help="muongpt commit for summary.md (default: git here)")
    p.add_argument("--date", default=None, help="date for the folder name and summary.md (default: today, UTC)")
    p.add_argument("--note", action="append", help="extra line for summary.md (repeatable)")
    p.add_argument("--meta", default=None,
                   help="JSON file with defaults for the fields above (record_cmd, ours_cmd, device_name, commit, date, "
                        "steps, notes), as run_modernarch.sh writes to $OUT/fidelity/meta.json; flags override it")
    p.add_argument("--selftest", action="store_true", help="fabricate two logs in a temp dir; check parsing and outputs")
    p.add_argument("--selftest-keep", default=None, help="with --selftest: copy the temp dir here")
    a = p.parse_args()
    if a.selftest:
        selftest(a.selftest_keep)
        return
    if not a.record_log or not a.ours:
        p.error("--record-log and --ours are required (or --selftest)")
    if a.meta:
        with open(a.meta, encoding="utf-8") as f:
            meta = json.load(f)
        for key in ("record_cmd", "ours_cmd", "device_name", "commit", "date", "steps"):
            if getattr(a, key) is None and meta.get(key) not in (None, ""):
                setattr(a, key, meta[key])
        a.note = list(meta.get("notes") or []) + list(a.note or [])
    a.compare_cmd = "python3 scripts/fidelity/compare_curves.py " + " ".join(
        _quote(x) for x in sys.argv[1:])
    run(a)


def _quote(s):
    return s if re.fullmatch(r"[A-Za-z0-9_./=:,+-]+", s) else "'" + s.replace("'", "'\\''") + "'"


if __name__ == "__main__":
    main()
