"""Schakel's benchmarks (``make bench``).

Every figure is reported against a baseline measured in the same run on the
same machine, because the machines are shared and noisy.
"""
