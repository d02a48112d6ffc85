"""spark-submit entry point for `recsys pipeline`: every step in order.

spark-submit jobs/pipeline.py --conf conf/local.yaml
"""

import sys

from recsys.cli import main

if __name__ == "__main__":
    sys.exit(main(["pipeline", *sys.argv[1:]]))
