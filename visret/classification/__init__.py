"""Classification pipelines: train, save, test, compare and reopen image classifiers of any kind."""

from visret.classification._pipeline import Pipeline
from visret.classification._report import ClassificationReport, Prediction
from visret.classification._training import load_pipeline, train_pipeline

__all__ = ["ClassificationReport", "Pipeline", "Prediction", "load_pipeline", "train_pipeline"]
