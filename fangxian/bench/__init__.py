"""The benchmark harness (not a test): ``fangxian bench`` (``fangxian/cli/bench.py``) runs it.
See ``docs/benchmark.md``."""
