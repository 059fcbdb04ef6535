"""Classification pipelines: train, save, test, compare and reopen image classifiers of any kind."""

from visret.pipelines.pipeline import Pipeline
from visret.pipelines.report import ClassificationReport, Prediction
from visret.pipelines.training import load_pipeline, train_pipeline

__all__ = ["ClassificationReport", "Pipeline", "Prediction", "load_pipeline", "train_pipeline"]
