"""visret's built-in classifier heads: k-NN (FAISS) and scikit-learn heads (saved with skops)."""

from visret import hookimpl
from visret.knn import KNNClassifier
from visret_heads.sklearn_heads import LinearSVMHead, LogisticHead, RandomForestHead


@hookimpl
def register_classifiers(register):
    for head in (KNNClassifier, LogisticHead, LinearSVMHead, RandomForestHead):
        register(head)
