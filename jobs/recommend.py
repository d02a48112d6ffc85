"""spark-submit entry point for `recsys recommend`.

spark-submit jobs/recommend.py --conf conf/local.yaml
"""

import sys

from recsys.cli import main

if __name__ == "__main__":
    sys.exit(main(["recommend", *sys.argv[1:]]))
