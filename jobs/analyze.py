"""spark-submit entry point for `recsys analyze`.

spark-submit jobs/analyze.py --conf conf/local.yaml
"""

import sys

from recsys.cli import main

if __name__ == "__main__":
    sys.exit(main(["analyze", *sys.argv[1:]]))
