"""Benchmarks: each scenario measured beside a raw baseline taken in the same run."""
