"""Benchmarks: short programs that measure, never tests (`python -m benchmarks.epoch`)."""
