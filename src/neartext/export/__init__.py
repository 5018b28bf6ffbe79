"""Deployable forms of a collection: an MLflow pyfunc model (``neartext export mlflow``)."""
