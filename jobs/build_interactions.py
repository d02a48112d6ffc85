"""spark-submit entry point for `recsys build-interactions`.

spark-submit jobs/build_interactions.py --conf conf/local.yaml
"""

import sys

from recsys.cli import main

if __name__ == "__main__":
    sys.exit(main(["build-interactions", *sys.argv[1:]]))
