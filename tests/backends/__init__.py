"""The core deletion semantics against each database MLflow supports."""
