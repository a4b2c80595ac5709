"""The built-in example that ``matinee demo`` runs."""
