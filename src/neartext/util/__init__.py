"""Foundations every layer may use: atomic files and swaps, locks, progress, retries, the matrix
product, text-file readers, result tables, text checks, optional packages, caches keyed by short
texts, freed memory given back to the system. Imports nothing of neartext but :mod:`neartext.errors`.
"""
