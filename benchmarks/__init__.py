"""Benchmarks for customerio-source (issue 4): see benchmarks/run.py."""
