"""visret: image retrieval and classification with handcrafted and deep features.

The public API is small: build an index from a folder, a list of images or vectors, open it, query it, evaluate k-NN on
held-out images; train, compare, save and reopen classification pipelines. Extractors and classifier heads come from plugins (see ``visret.plugins.hookspecs``).
"""

import os as _os

# OpenMP threads that wait by spinning (libgomp's default) make FAISS 10-20x slower on a machine
# whose cores are busy with other work; sleeping waiters cost little. Set before FAISS loads
# libgomp; an explicit setting of the user's wins.
_os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from typing import TYPE_CHECKING

from visret._lazy import lazy_face
from visret.errors import VisretError
from visret.version import __version__

if TYPE_CHECKING:  # the public names, each imported on first use (visret._lazy): a query never imports classification
    from visret.classification import ClassificationReport, Pipeline, Prediction, load_pipeline, train_pipeline
    from visret.classification._comparison import PipelineComparison, compare_pipelines
    from visret.duplicates import DuplicateReport, find_duplicates
    from visret.embedding import embed_folder, embed_images
    from visret.evaluation import KnnReport, Recipe, TuningResult, evaluate_features, evaluate_knn, read_recipe, tune
    from visret.features import Classifier, FeatureExtractor, InputSpec, from_config, get_classifier, get_extractor
    from visret.images import ImageRecord
    from visret.index import (
        Changes,
        Entry,
        Index,
        Neighbor,
        QueryResult,
        add_images,
        build_index,
        export_autofaiss,
        import_faiss_index,
        index_from_arrays,
        open_index,
        remove_images,
        sync_index,
    )
    from visret.plugins import hookimpl

__getattr__, __dir__ = lazy_face(__name__, __file__, globals())

__all__ = [
    "Changes",
    "ClassificationReport",
    "Classifier",
    "DuplicateReport",
    "Entry",
    "FeatureExtractor",
    "ImageRecord",
    "Index",
    "InputSpec",
    "KnnReport",
    "Neighbor",
    "Pipeline",
    "PipelineComparison",
    "Prediction",
    "QueryResult",
    "Recipe",
    "TuningResult",
    "VisretError",
    "__version__",
    "add_images",
    "build_index",
    "compare_pipelines",
    "embed_folder",
    "embed_images",
    "evaluate_features",
    "evaluate_knn",
    "export_autofaiss",
    "find_duplicates",
    "from_config",
    "get_classifier",
    "get_extractor",
    "hookimpl",
    "import_faiss_index",
    "index_from_arrays",
    "load_pipeline",
    "open_index",
    "read_recipe",
    "remove_images",
    "sync_index",
    "train_pipeline",
    "tune",
]
