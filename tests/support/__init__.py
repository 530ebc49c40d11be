"""Test support: a real `mlflow server` harness and helpers that seed and read back traces."""
