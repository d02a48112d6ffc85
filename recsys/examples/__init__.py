"""Worked examples on public data: converters from a data set's own shape to the ingest files."""
