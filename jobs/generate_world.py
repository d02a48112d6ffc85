"""spark-submit entry point for `recsys generate-world`.

spark-submit jobs/generate_world.py --conf conf/local.yaml [--set world.users=50000]
"""

import sys

from recsys.cli import main

if __name__ == "__main__":
    sys.exit(main(["generate-world", *sys.argv[1:]]))
