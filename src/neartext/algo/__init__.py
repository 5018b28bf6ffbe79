"""Algorithms on vectors and numbers, independent of any collection: metrics, paraphrase mining,
duplicate groups, topic labels, embedding adapters.
"""
