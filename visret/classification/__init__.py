"""Classification pipelines: train, save, test, compare and reopen image classifiers of any kind."""

from visret.classification._features import FeaturePipeline
from visret.classification._pipeline import PIPELINES, Pipeline
from visret.classification._report import ClassificationReport, Prediction
from visret.classification._training import load_pipeline, train_pipeline

__all__ = ["PIPELINES", "ClassificationReport", "FeaturePipeline", "Pipeline", "Prediction", "load_pipeline", "train_pipeline"]
