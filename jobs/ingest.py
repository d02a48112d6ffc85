"""spark-submit entry point for `recsys ingest`: your own users and events files.

spark-submit jobs/ingest.py --conf conf/local.yaml --users data/users.csv --events data/events.csv
"""

import sys

from recsys.cli import main

if __name__ == "__main__":
    sys.exit(main(["ingest", *sys.argv[1:]]))
