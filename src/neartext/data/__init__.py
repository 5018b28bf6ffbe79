"""What neartext's data is, as plain typed values and pure functions: corpora, cleaning, addresses,
filters, the manifest, rankings, results, vectors users bring, words for keyword search,
evaluation files. No store, no model.
"""
