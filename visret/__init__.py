"""visret: image retrieval and classification with handcrafted and deep features.

The public API is small: build an index from a folder, a list of images or vectors, open it, query it, evaluate k-NN on
held-out images; train, compare, save and reopen classification pipelines. Extractors and classifier heads come from plugins (see ``visret.hookspecs``).
"""

import os as _os

# OpenMP threads that wait by spinning (libgomp's default) make FAISS 10-20x slower on a machine
# whose cores are busy with other work; sleeping waiters cost little. Set before FAISS loads
# libgomp; an explicit setting of the user's wins.
_os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from visret.classifier import Classifier
from visret.version import __version__
from visret.duplicates import DuplicateReport, find_duplicates
from visret.errors import VisretError
from visret.evaluation import KnnReport, evaluate_features, evaluate_knn
from visret.extractor import FeatureExtractor, InputSpec
from visret.fitting import embed_folder
from visret.index import Index, Neighbor, QueryResult, open_index
from visret.autofaiss import export_autofaiss, import_faiss_index
from visret.indexing import add_images, build_index, index_from_arrays, remove_images, sync_index
from visret.pipelines import ClassificationReport, Pipeline, load_pipeline, train_pipeline
from visret.pipelines.comparison import PipelineComparison, compare_pipelines
from visret.plugins import from_config, get_classifier, get_extractor, hookimpl

__all__ = [
    "ClassificationReport",
    "Classifier",
    "DuplicateReport",
    "FeatureExtractor",
    "Index",
    "InputSpec",
    "KnnReport",
    "Neighbor",
    "Pipeline",
    "PipelineComparison",
    "QueryResult",
    "VisretError",
    "__version__",
    "add_images",
    "build_index",
    "compare_pipelines",
    "embed_folder",
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
    "remove_images",
    "sync_index",
    "train_pipeline",
]
