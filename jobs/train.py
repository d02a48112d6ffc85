"""spark-submit entry point for `recsys train`.

spark-submit jobs/train.py --conf conf/local.yaml
"""

import sys

from recsys.cli import main

if __name__ == "__main__":
    sys.exit(main(["train", *sys.argv[1:]]))
