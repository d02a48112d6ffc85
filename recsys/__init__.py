"""recsys: per-market subscription plan recommendations on Apache Spark."""
