"""Benchmarks: MLflow's docs recipe, fixed batches, one unbounded call and this engine, compared
on identically seeded backfills against real `mlflow server`s (SQLite and PostgreSQL), with a
probe client measuring what other users of the server pay. Run `python -m benchmarks --help`.
"""
