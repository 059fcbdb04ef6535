"""What plugin authors implement and use: the ``FeatureExtractor`` and ``Classifier`` contracts, parameter
checks (``visret.features.params``), row normalisations (``visret.features.normalization``), and
registered extractors and heads created by name or from a saved config, and the one check of every
extractor's output (``checked_features``)."""

from visret.features._classifier import Classifier
from visret.features._extractor import DEFAULT_EXTRACTOR, DEFAULT_EXTRACTOR_LABEL, FeatureExtractor, InputSpec
from visret.features._lookup import (
    CLASSIFIERS,
    EXTRACTORS,
    classifier_classes,
    extractor_classes,
    extractor_from_spec,
    from_config,
    get_classifier,
    get_extractor,
    plugin_of,
    resolve_extractor,
)
from visret.features._output import checked_features, checked_query_features, finite_rows

__all__ = [
    "CLASSIFIERS", "DEFAULT_EXTRACTOR", "DEFAULT_EXTRACTOR_LABEL", "EXTRACTORS", "Classifier", "FeatureExtractor",
    "InputSpec", "checked_features", "checked_query_features", "classifier_classes", "extractor_classes", "extractor_from_spec", "finite_rows", "from_config", "get_classifier",
    "get_extractor", "plugin_of", "resolve_extractor",
]
