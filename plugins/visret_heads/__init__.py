"""visret's built-in classifier heads (k-NN on FAISS, scikit-learn heads saved with skops) and the
``features`` pipeline that puts a head on any extractor."""

from visret import hookimpl
from visret_heads.knn import KNNClassifier
from visret_heads.sklearn_heads import LinearSVMHead, LogisticHead, RandomForestHead, SVMHead


@hookimpl
def register_classifiers(register):
    for head in (KNNClassifier, LogisticHead, LinearSVMHead, SVMHead, RandomForestHead):
        register(head)


@hookimpl
def register_pipelines(register):
    from visret.classification import FeaturePipeline  # imported when pipelines are asked for, not by every command

    register(FeaturePipeline)
