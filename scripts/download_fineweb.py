#!/usr/bin/env python3
"""Downloads the speedrun's pre-tokenized FineWeb shards from Hugging Face.

    python3 scripts/download_fineweb.py N [--dir DIR] [--dataset NAME] [--dry-run]

fetches the validation shard and the first N training shards: the same files
modded-nanogpt's data/cached_fineweb10B.py downloads (GPT-2 tokens in the .bin
shard format muongpt reads, about 100M tokens per shard, ~200 MB each).

  --dataset       Hugging Face dataset       files                              N
  fineweb10B      kjj0/fineweb10B-gpt2       fineweb_{val,train}_NNNNNN.bin     1..103
  fineweb100B     kjj0/fineweb100B-gpt2      fineweb_{val,train}_NNNNNN.bin     1..1030
  finewebedu10B   kjj0/finewebedu10B-gpt2    finewebedu_{val,train}_NNNNNN.bin  1..99

Train shards are numbered from 1 (shard 0 is the validation shard). Files
already present in DIR are kept. Needs network access and huggingface_hub
(pip install huggingface_hub); --dry-run and --help need neither. Then train
with, for example,
    --set "data.train_pattern=data/fineweb10B/fineweb_train_*.bin"
    --set "data.val_pattern=data/fineweb10B/fineweb_val_*.bin"
"""
import argparse
import os
import sys

DATASETS = {
    # name: (Hugging Face dataset repo, file prefix, number of train shards)
    "fineweb10B": ("kjj0/fineweb10B-gpt2", "fineweb", 103),
    "fineweb100B": ("kjj0/fineweb100B-gpt2", "fineweb", 1030),
    "finewebedu10B": ("kjj0/finewebedu10B-gpt2", "finewebedu", 99),
}


def parse_args(argv):
    ap = argparse.ArgumentParser(prog="download_fineweb.py", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("n", metavar="N", help="number of training shards to fetch (besides the validation shard)")
    ap.add_argument("--dataset", choices=sorted(DATASETS), default="fineweb10B", help="which tokenized set (default fineweb10B)")
    ap.add_argument("--dir", help="destination directory (default: data/<dataset> in the repository)")
    ap.add_argument("--dry-run", action="store_true", help="print the files that would be fetched, fetch nothing")
    args = ap.parse_args(argv)
    repo, prefix, limit = DATASETS[args.dataset]
    try:
        args.n = int(args.n)
    except ValueError:
        ap.error(f"N must be a whole number of shards, got {args.n!r}")
    if not 1 <= args.n <= limit:
        ap.error(f"N must be between 1 and {limit} for {args.dataset} (it has {limit} training shards), got {args.n}")
    if args.dir is None:
        args.dir = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "data", args.dataset)
    args.repo, args.prefix = repo, prefix
    return args


def file_names(prefix, n):
    return [f"{prefix}_val_{0:06d}.bin"] + [f"{prefix}_train_{i:06d}.bin" for i in range(1, n + 1)]


def main(argv):
    args = parse_args(argv)
    names = file_names(args.prefix, args.n)
    if args.dry_run:
        print(f"would fetch {len(names)} files from the Hugging Face dataset {args.repo} into {args.dir}:")
        for name in names:
            print(f"  {name}")
        return 0
    try:
        from huggingface_hub import hf_hub_download  # imported late: --help and --dry-run work without it
    except ImportError:
        print("download_fineweb.py: needs huggingface_hub (pip install huggingface_hub)", file=sys.stderr)
        return 1
    os.makedirs(args.dir, exist_ok=True)
    for k, name in enumerate(names, 1):
        if os.path.exists(os.path.join(args.dir, name)):
            print(f"[{k}/{len(names)}] {name}: already present")
            continue
        print(f"[{k}/{len(names)}] {name}: downloading", flush=True)
        hf_hub_download(repo_id=args.repo, filename=name, repo_type="dataset", local_dir=args.dir)
    print(f"download_fineweb.py: {len(names)} files in {args.dir}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
