"""The attention study: every variant trained to convergence over several seeds, then compared.

    python scripts/compare_attention.py                      # all variants, seeds 1 2 3, two runs at a time
    python scripts/compare_attention.py --jobs 1 --seeds 1   # one run at a time, one seed
    python scripts/compare_attention.py --report             # only rebuild the report from what is done
    python scripts/compare_attention.py --speed              # time every variant's training, quiet machine

The study itself (its recipe, the runs' summaries, the report and its figures) is
seq2seq/report/attention_study.py, run by seq2seq/cli/study.py; ``--help`` describes it.
"""

from __future__ import annotations

from seq2seq.cli.study import main

if __name__ == "__main__":
    main()
