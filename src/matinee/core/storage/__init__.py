"""Storage backends: the metadata database (SQLite, PostgreSQL) and blob stores (local, fsspec)."""
