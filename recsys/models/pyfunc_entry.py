"""The file MLflow logs as the pyfunc model's code ("models from code")."""

import mlflow

from recsys.models.pyfunc import RecsysPyfunc

mlflow.models.set_model(RecsysPyfunc())
