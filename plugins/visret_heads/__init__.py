"""visret's built-in classifier heads."""

from visret import hookimpl
from visret.knn import KNNClassifier


@hookimpl
def register_classifiers(register):
    register(KNNClassifier)
