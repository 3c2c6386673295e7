#!/usr/bin/env python3
"""Extract the training script of modded-nanogpt record #5 ("ModernArch") from its log, and
write a copy patched for the short fidelity run (scripts/fidelity/run_modernarch.sh).

The peer's code is never committed: everything goes to peers/modernarch/ (ignored through
.git/info/exclude, which this script also sets up).

Log structure (records/track_1_short/2024-10-14_ModernArch/<uuid>.txt): the script writes its
log file as
    '=' * 100            (one line)
    <the script's own source, verbatim>
    '=' * 100
    Running pytorch ... compiled for CUDA ...
    nvidia-smi: ... (the full nvidia-smi output)
    '=' * 100
    step:0/5100 val_loss:... / step:1/5100 train_loss:... lines
so the script is the text between the first separator line and the separator that is followed
by "Running pytorch". (The record folder also holds train_gpt2.py; when reading from the
repository both are compared.)

Usage:
  # from the fetched repository snapshot (a bare git directory) or a checkout:
  python3 scripts/fidelity/extract_record.py --source /work/.mirror/KellerJordan+modded-nanogpt/repo
  # from the log file itself:
  python3 scripts/fidelity/extract_record.py --source path/to/dabaaddd-....txt
  # only re-patch an already extracted script (what run_modernarch.sh does on the GPU machine):
  python3 scripts/fidelity/extract_record.py --from-script peers/modernarch/train_gpt2.py

Patch (textual, each substitution must match exactly once, else the script fails): the
Hyperparameters defaults (data paths -> our shards, batch, sequence length, steps, warmdown,
validation cadence and size) and the end-of-run checkpoint save (disabled). Nothing else in the
peer's code changes, unless --align-data-order is given (removes the train_loader.reset() before
the training loop; see docs/speedrun.md "Fidelity gaps", data order).
"""

import argparse
import hashlib
import os
import re
import subprocess
import sys

REPO_ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
RECORD_DIR = "records/track_1_short/2024-10-14_ModernArch"
RECORD_LOG = RECORD_DIR + "/dabaaddd-237c-4ec9-939d-6608a9ed5e27.txt"
RECORD_SCRIPT = RECORD_DIR + "/train_gpt2.py"
# SHA-256 of the script embedded in the log (snapshot f411b3d of KellerJordan/modded-nanogpt);
# a different script is reported (the substitutions are checked either way).
KNOWN_SCRIPT_SHA256 = "7199ba9f956c20aceffc7112a0e430db68964fa19d4fa427f743fc3d5f33bd4b"

SEP = "=" * 100
RECORD_STEPS = 5100
RECORD_WARMDOWN = 1450


def fail(msg):
    sys.exit(f"extract_record.py: error: {msg}")


def sha256(text):
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def split_log(text):
    """Returns (script, rest): the script text and everything from 'Running pytorch' on."""
    if not text.startswith(SEP + "\n"):
        fail("the log does not start with a line of 100 '=' (not a modded-nanogpt record log?)")
    marker = SEP + "\nRunning pytorch"
    end = text.find(marker, len(SEP) + 1)
    if end < 0:
        fail("no line of 100 '=' followed by 'Running pytorch' after the script: unexpected log structure")
    script = text[len(SEP) + 1:end]
    if not script.endswith("\n"):  # the source did not end with a newline: the separator followed it directly
        script += "\n"
    return script, text[end + len(SEP) + 1:]


def git_show(git_dir, rev, path):
    r = subprocess.run(["git", "--git-dir", git_dir, "show", f"{rev}:{path}"], capture_output=True, text=True)
    if r.returncode != 0:
        return None
    return r.stdout


def git_commit(git_dir, rev):
    r = subprocess.run(["git", "--git-dir", git_dir, "rev-parse", rev], capture_output=True, text=True)
    return r.stdout.strip() if r.returncode == 0 else rev


def read_source(source, rev):
    """Returns (log_text, record_script_text_or_None, provenance)."""
    if os.path.isfile(source):
        with open(source, encoding="utf-8") as f:
            return f.read(), None, f"log file {os.path.abspath(source)}"
    if not os.path.isdir(source):
        fail(f"--source {source}: no such file or directory")
    # a checkout
    log_path = os.path.join(source, RECORD_LOG)
    if os.path.isfile(log_path):
        with open(log_path, encoding="utf-8") as f:
            log = f.read()
        script_path = os.path.join(source, RECORD_SCRIPT)
        script = open(script_path, encoding="utf-8").read() if os.path.isfile(script_path) else None
        return log, script, f"checkout {os.path.abspath(source)}, {RECORD_LOG}"
    # a git directory (bare, as the fetch tool makes) or a checkout's .git
    for git_dir in (source, os.path.join(source, ".git")):
        if os.path.isdir(git_dir):
            log = git_show(git_dir, rev, RECORD_LOG)
            if log is not None:
                commit = git_commit(git_dir, rev)
                return (log, git_show(git_dir, rev, RECORD_SCRIPT),
                        f"KellerJordan/modded-nanogpt commit {commit}, {RECORD_LOG}")
    fail(f"--source {source}: neither the log file nor a checkout/git directory holding {RECORD_LOG}")


# ----------------------------------------------------------------------------------------------
# patching

def substitute_line(text, old, new, what):
    """Replaces the one line whose code (without indentation and trailing comment) is `old`."""
    pat = re.compile(r"^([ \t]*)" + re.escape(old) + r"([ \t]*(#.*)?)$", re.M)
    hits = pat.findall(text)
    if len(hits) != 1:
        fail(f"patch '{what}': expected exactly one line `{old}`, found {len(hits)}; "
             "the script is not the one this patch was written for")
    return pat.sub(lambda m: m.group(1) + new + (m.group(2) or ""), text)


def remove_line(text, old, what):
    pat = re.compile(r"^[ \t]*" + re.escape(old) + r"[ \t]*(#.*)?\n", re.M)
    hits = pat.findall(text)
    if len(hits) != 1:
        fail(f"patch '{what}': expected exactly one line `{old}`, found {len(hits)}")
    return pat.sub(lambda m: f"# [fidelity run: removed `{old}`]\n", text)


def patch(script, a):
    seqs, rem = divmod(a.batch_tokens, a.seq_len)
    if rem:
        fail(f"--batch-tokens {a.batch_tokens} is not a multiple of --seq-len {a.seq_len}")
    if seqs % a.device_batch:
        fail(f"--batch-tokens / --seq-len = {seqs} sequences is not a multiple of --device-batch {a.device_batch}")
    if a.val_tokens % (a.device_batch * a.seq_len):
        fail(f"--val-tokens {a.val_tokens} must be a multiple of device_batch x seq_len = "
             f"{a.device_batch * a.seq_len} (the record script asserts it for world size 1)")
    subs = [
        ("input_bin : str = 'data/fineweb10B/fineweb_train_*.bin'", f"input_bin : str = {a.train_bin!r}", "train data"),
        ("input_val_bin : str = 'data/fineweb10B/fineweb_val_*.bin'", f"input_val_bin : str = {a.val_bin!r}", "val data"),
        ("batch_size : int = 8*64", f"batch_size : int = {seqs}", "global batch (sequences)"),
        ("device_batch_size : int = 64", f"device_batch_size : int = {a.device_batch}", "device batch"),
        ("sequence_length : int = 1024", f"sequence_length : int = {a.seq_len}", "sequence length"),
        (f"num_iterations : int = {RECORD_STEPS}", f"num_iterations : int = {a.steps}", "steps"),
        (f"warmdown_iters : int = {RECORD_WARMDOWN}", f"warmdown_iters : int = {a.warmdown}", "warmdown"),
        ("val_loss_every : int = 125", f"val_loss_every : int = {a.val_every}", "val cadence"),
        ("val_tokens : int = 10485760", f"val_tokens : int = {a.val_tokens}", "val tokens"),
        ("save_every : int = 0", "save_every : int = 0", "checkpoint cadence (unchanged, checked)"),
        # save_every = 0 still saves model + optimizer state at the last step; the fidelity run saves nothing
        ("if master_process and (last_step or (args.save_every > 0 and step % args.save_every == 0)):",
         "if master_process and (args.save_every > 0 and step % args.save_every == 0):  # [fidelity run: no final checkpoint]",
         "final checkpoint"),
    ]
    out = script
    for old, new, what in subs:
        out = substitute_line(out, old, new, what)
    if a.align_data_order:
        out = remove_line(out, "train_loader.reset()", "data order")
    header = (
        "# [fidelity run] Patched copy of modded-nanogpt record #5 (ModernArch) written by\n"
        "# scripts/fidelity/extract_record.py: Hyperparameters defaults for the short fidelity run,\n"
        f"# steps {a.steps}, warmdown {a.warmdown}, {seqs} x {a.seq_len} tokens per step, val every {a.val_every} "
        f"steps on {a.val_tokens} tokens,\n# no checkpoint{', no train_loader.reset() before the loop' if a.align_data_order else ''}."
        " Not part of muongpt; never commit (peers/ is git-ignored).\n"
    )
    # keep line 1.. of the peer's code intact after our header (the script reads sys.argv[0] only for logging)
    return header + out


def ensure_excluded():
    git_dir = os.path.join(REPO_ROOT, ".git")
    if not os.path.isdir(git_dir):
        return  # a copy without .git (e.g. the GPU machine): nothing to exclude
    info = os.path.join(git_dir, "info")
    os.makedirs(info, exist_ok=True)
    path = os.path.join(info, "exclude")
    text = open(path).read() if os.path.exists(path) else ""
    if "peers/" not in text.splitlines():
        with open(path, "a") as f:
            f.write(("\n" if text and not text.endswith("\n") else "") + "peers/\n")
        print(f"added 'peers/' to {path}")


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--source", help="the record log file, a checkout of modded-nanogpt, or its git directory")
    src.add_argument("--from-script", help="an already extracted train_gpt2.py: only write the patched copy")
    p.add_argument("--rev", default="HEAD", help="revision when --source is a git directory (default HEAD)")
    p.add_argument("--out-dir", default=os.path.join(REPO_ROOT, "peers", "modernarch"))
    p.add_argument("--train-bin", default=os.path.join(REPO_ROOT, "data", "tiny", "train_000000.bin"),
                   help="train shard (glob) the patched script reads; default: absolute path of data/tiny/train_000000.bin")
    p.add_argument("--val-bin", default=os.path.join(REPO_ROOT, "data", "tiny", "val_000000.bin"))
    p.add_argument("--steps", type=int, default=200)
    p.add_argument("--warmdown", type=int, default=None,
                   help=f"default round({RECORD_WARMDOWN}/{RECORD_STEPS} * steps) (57 for 200 steps)")
    p.add_argument("--batch-tokens", type=int, default=65536)
    p.add_argument("--device-batch", type=int, default=64)
    p.add_argument("--seq-len", type=int, default=1024)
    p.add_argument("--val-every", type=int, default=25)
    p.add_argument("--val-tokens", type=int, default=131072)
    p.add_argument("--align-data-order", action="store_true",
                   help="also remove the train_loader.reset() before the loop (the record then trains on batch k at "
                        "step k, as muongpt does, instead of batch 0 twice)")
    a = p.parse_args()
    if a.warmdown is None:
        a.warmdown = round(RECORD_WARMDOWN / RECORD_STEPS * a.steps)
    if not 0 <= a.warmdown <= a.steps:
        fail(f"--warmdown {a.warmdown} outside [0, steps]")

    os.makedirs(a.out_dir, exist_ok=True)
    ensure_excluded()
    raw_path = os.path.join(a.out_dir, "train_gpt2.py")
    if a.source:
        log, record_script, provenance = read_source(a.source, a.rev)
        script, rest = split_log(log)
        steps_logged = sum(1 for l in rest.splitlines() if re.match(r"step:\d+/\d+ (train|val)_loss:", l))
        print(f"source: {provenance}")
        print(f"script: {len(script.splitlines())} lines, sha256 {sha256(script)}; log: {steps_logged} step lines")
        if record_script is not None:
            print("record folder's train_gpt2.py: " + ("identical to the log's script" if record_script == script
                                                    else "DIFFERS from the log's script (the log's is used)"))
        with open(raw_path, "w", encoding="utf-8") as f:
            f.write(script)
        with open(os.path.join(a.out_dir, "SOURCE.txt"), "w") as f:
            f.write(f"{provenance}\nscript sha256 {sha256(script)}\n"
                    "Peer code (KellerJordan/modded-nanogpt): never commit; peers/ is git-ignored.\n")
        print(f"wrote {raw_path}")
    else:
        if not os.path.isfile(a.from_script):
            fail(f"--from-script {a.from_script}: not found (extract it first with --source; "
                 "on the GPU machine pass peers/ to the device call with carry)")
        script = open(a.from_script, encoding="utf-8").read()
        if os.path.abspath(a.from_script) != os.path.abspath(raw_path):
            with open(raw_path, "w", encoding="utf-8") as f:
                f.write(script)
    digest = sha256(script)
    if digest != KNOWN_SCRIPT_SHA256:
        print(f"warning: script sha256 {digest} is not the known record #5 script's {KNOWN_SCRIPT_SHA256}",
              file=sys.stderr)
    patched = patch(script, a)
    patched_path = os.path.join(a.out_dir, "train_gpt2_fidelity.py")
    with open(patched_path, "w", encoding="utf-8") as f:
        f.write(patched)
    print(f"wrote {patched_path}: steps {a.steps}, warmdown {a.warmdown}, batch {a.batch_tokens} tokens "
          f"({a.batch_tokens // a.seq_len} x {a.seq_len}, device batch {a.device_batch}), val every {a.val_every} on "
          f"{a.val_tokens} tokens, data {a.train_bin} / {a.val_bin}, no checkpoint"
          + (", data order aligned (no train_loader.reset())" if a.align_data_order else ""))


if __name__ == "__main__":
    main()
