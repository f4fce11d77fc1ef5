"""Search engines: embeddings, vectors, words, their fusion and the batch indexer."""
