"""asgiserve benchmark harness: `python -m benchmarks --help`."""
