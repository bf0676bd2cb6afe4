"""Benchmarks: speed, memory and accuracy; figures are ratios against a baseline run in the same process."""
