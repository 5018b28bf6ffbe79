"""The code MLflow loads for a neartext model (MLflow's "models from code"): no pickles."""

import mlflow

from neartext.export.mlflow_model import NeartextModel

mlflow.models.set_model(NeartextModel())
