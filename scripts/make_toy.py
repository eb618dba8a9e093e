"""Write a toy task corpus: python scripts/make_toy.py reverse data/toy_reverse [--seed 0]."""

import argparse

from seq2seq.data.toy import generate

parser = argparse.ArgumentParser(description=__doc__)
parser.add_argument("task", choices=["reverse", "copy"])
parser.add_argument("directory")
parser.add_argument("--seed", type=int, default=0)
parser.add_argument("--src-lang", default="src")
parser.add_argument("--tgt-lang", default="tgt")
args = parser.parse_args()
generate(args.task, args.directory, args.src_lang, args.tgt_lang, args.seed)
print(f"wrote {args.task} task to {args.directory}")
