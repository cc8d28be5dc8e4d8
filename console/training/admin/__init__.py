"""Training in the admin: curating pairs (pairs.py) and adapter versions (runs.py)."""

from console.training.admin import pairs, runs  # noqa: F401  (each registers its ModelAdmin)
