"""Storage: the encrypted SQLite database, its schema and its keys."""
