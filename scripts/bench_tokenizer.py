#!/usr/bin/env python3
"""Encoding throughput of muongpt's C++ GPT-2 tokenizer against tiktoken, side
by side, on the same documents and the same numbers of threads.

    python3 scripts/bench_tokenizer.py [--threads 1,2] [--repeat 3] [--corpora DIR] [--bin build/muongpt]

Documents: every .txt file under --corpora (default ../shared/data/corpora
beside the repository), one document each.
  muongpt    `muongpt prepare CORPORA --dry-run --threads N`: "encode" is the
             MB/s of its parallel encoding phase (UTF-8 check, pre-tokenisation,
             BPE; file reading and the tokenizer's load excluded), "end to end"
             the whole command's wall time (process start, load, reading).
  tiktoken   Encoding.encode_ordinary_batch(texts, num_threads=N) on the texts
             already in memory, with the gpt2 encoding built from data/gpt2.
Each figure is the best of --repeat runs. MB = 10^6 bytes of input text. The
token counts of both are compared. Prints a table, then one JSON line.
"""
import argparse
import json
import os
import platform
import subprocess
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def tiktoken_gpt2():
    os.environ["TIKTOKEN_CACHE_DIR"] = ""  # local files only
    import tiktoken
    import tiktoken.load
    from tiktoken_ext.openai_public import r50k_pat_str
    gpt2 = os.path.join(REPO, "data", "gpt2")
    ranks = tiktoken.load.data_gym_to_mergeable_bpe_ranks(
        vocab_bpe_file=os.path.join(gpt2, "vocab.bpe"), encoder_json_file=os.path.join(gpt2, "encoder.json"))
    enc = tiktoken.Encoding(name="gpt2_local", pat_str=r50k_pat_str, mergeable_ranks=ranks,
                            special_tokens={"<|endoftext|>": 50256}, explicit_n_vocab=50257)
    return enc, tiktoken.__version__


def load_documents(corpora):
    paths = sorted(os.path.join(d, f) for d, _, names in os.walk(corpora) for f in names if f.endswith(".txt"))
    if not paths:
        sys.exit(f"bench_tokenizer: no .txt files under {corpora}")
    data = [open(p, "rb").read() for p in paths]
    return [b.decode("utf-8", errors="replace") for b in data], sum(len(b) for b in data)


def bench_tiktoken(enc, texts, nbytes, threads, repeat):
    best, tokens = float("inf"), 0
    for _ in range(repeat):
        start = time.perf_counter()
        out = enc.encode_ordinary_batch(texts, num_threads=threads)
        best = min(best, time.perf_counter() - start)
        tokens = sum(len(ids) for ids in out)
    return {"mb_per_s": nbytes / best / 1e6, "seconds": best, "tokens": tokens}


def bench_muongpt(binary, corpora, threads, repeat):
    best = None
    for _ in range(repeat):
        start = time.perf_counter()
        run = subprocess.run([binary, "prepare", corpora, "--dry-run", "--threads", str(threads), "--no-progress"],
                             capture_output=True, text=True)
        wall = time.perf_counter() - start
        if run.returncode != 0:
            sys.exit(f"bench_tokenizer: {binary} prepare failed:\n{run.stderr}")
        summary = json.loads(run.stdout.strip().splitlines()[-1])
        result = {"mb_per_s": summary["encode_mb_per_s"], "seconds": summary["encode_seconds"],
                  "end_to_end_mb_per_s": summary["input_bytes"] / wall / 1e6, "end_to_end_seconds": wall,
                  "tokens": summary["tokens"] - summary["documents"]}  # without the <|endoftext|> separators
        if best is None or result["seconds"] < best["seconds"]:
            best = result
    return best


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--threads", default="1,2", help="comma-separated thread counts (default 1,2)")
    ap.add_argument("--repeat", type=int, default=3, help="runs per measurement; the best counts (default 3)")
    ap.add_argument("--corpora", default=os.path.join(REPO, "..", "shared", "data", "corpora"))
    ap.add_argument("--bin", default=os.path.join(REPO, "build", "muongpt"))
    args = ap.parse_args()
    threads = [int(t) for t in args.threads.split(",")]
    if not os.path.isdir(args.corpora):
        sys.exit(f"bench_tokenizer: corpora folder {args.corpora} not found (pass --corpora DIR)")
    if not os.access(args.bin, os.X_OK):
        sys.exit(f"bench_tokenizer: {args.bin} not found; build first or pass --bin")
    try:
        enc, version = tiktoken_gpt2()
    except ImportError:
        sys.exit("bench_tokenizer: needs tiktoken (pip install tiktoken)")
    texts, nbytes = load_documents(args.corpora)

    rows = []
    print(f"{len(texts)} documents, {nbytes / 1e6:.2f} MB, best of {args.repeat}")
    print(f"{'threads':>7} | {'muongpt encode MB/s':>19} | {'muongpt end to end MB/s':>23} | {'tiktoken MB/s':>13} | "
          f"{'speedup':>7} | tokens equal")
    for n in threads:
        ours = bench_muongpt(args.bin, os.path.abspath(args.corpora), n, args.repeat)
        theirs = bench_tiktoken(enc, texts, nbytes, n, args.repeat)
        equal = ours["tokens"] == theirs["tokens"]
        rows.append({"threads": n, "muongpt": ours, "tiktoken": theirs, "tokens_equal": equal})
        print(f"{n:>7} | {ours['mb_per_s']:>19.1f} | {ours['end_to_end_mb_per_s']:>23.1f} | "
              f"{theirs['mb_per_s']:>13.1f} | {ours['mb_per_s'] / theirs['mb_per_s']:>6.1f}x | "
              f"{'yes' if equal else 'NO'} ({theirs['tokens']})")
    print(json.dumps({"bench": "tokenizer", "documents": len(texts), "bytes": nbytes, "tiktoken": version,
                      "cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(), "rows": rows}))
    return 0 if all(r["tokens_equal"] for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
