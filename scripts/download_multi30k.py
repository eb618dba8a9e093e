"""Download the raw Multi30k task-1 files into data/multi30k/ (needs internet).

    python scripts/download_multi30k.py [--dest data/multi30k]

Files: {train,val,test_2016_flickr}.{en,de,fr,cs}.gz from the multi30k/dataset repository.
"""

from __future__ import annotations

import argparse
import sys
import urllib.request
from pathlib import Path

BASE = "https://raw.githubusercontent.com/multi30k/dataset/master/data/task1/raw"
SPLITS = ("train", "val", "test_2016_flickr")
LANGS = ("en", "de", "fr", "cs")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dest", default="data/multi30k")
    args = parser.parse_args()
    dest = Path(args.dest)
    dest.mkdir(parents=True, exist_ok=True)
    for split in SPLITS:
        for lang in LANGS:
            name = f"{split}.{lang}.gz"
            target = dest / name
            if target.exists():
                continue
            tmp = target.with_name(name + ".part")
            try:
                urllib.request.urlretrieve(f"{BASE}/{name}", tmp)
            except OSError as err:
                tmp.unlink(missing_ok=True)
                print(f"error: cannot download {BASE}/{name}: {err}\nput the files into {dest}/ by hand",
                      file=sys.stderr)
                return 1
            tmp.replace(target)
            print(f"downloaded {target}")
    print(f"Multi30k task 1 is in {dest}/")
    return 0


if __name__ == "__main__":
    sys.exit(main())
