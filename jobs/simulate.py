"""spark-submit entry point for `recsys simulate`.

spark-submit jobs/simulate.py --conf conf/local.yaml
"""

import sys

from recsys.cli import main

if __name__ == "__main__":
    sys.exit(main(["simulate", *sys.argv[1:]]))
