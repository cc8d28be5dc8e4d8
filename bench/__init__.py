"""Benchmarks, not tests: each script runs as `python -m bench.<name>` from the repository root,
prints its tables and (on a full run) rewrites its own section of docs/benchmarks.md."""
