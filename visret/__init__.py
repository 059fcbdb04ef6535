"""visret: image retrieval and classification with handcrafted and deep features.

The public API is small: build an index from a folder, a list of images or vectors, open it, query it, evaluate k-NN on
held-out images; train, compare, save and reopen classification pipelines. Extractors and classifier heads come from plugins (see ``visret.plugins.hookspecs``).
"""

import os as _os

# OpenMP threads that wait by spinning (libgomp's default) make FAISS 10-20x slower on a machine
# whose cores are busy with other work; sleeping waiters cost little. Set before FAISS loads
# libgomp; an explicit setting of the user's wins.
_os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from visret.errors import VisretError
from visret.version import __version__

#: The public names and the module each lives in: imported on first use (PEP 562), so that a command
#: pays only for what it uses (a query never imports classification, evaluation or reports).
_PUBLIC = {
    "visret.classification": ("ClassificationReport", "Pipeline", "Prediction", "load_pipeline", "train_pipeline"),
    "visret.classification._comparison": ("PipelineComparison", "compare_pipelines"),
    "visret.duplicates": ("DuplicateReport", "find_duplicates"),
    "visret.embedding": ("embed_folder", "embed_images"),
    "visret.evaluation": ("KnnReport", "Recipe", "TuningResult", "evaluate_features", "evaluate_knn", "read_recipe", "tune"),
    "visret.features": ("Classifier", "FeatureExtractor", "InputSpec", "from_config", "get_classifier", "get_extractor"),
    "visret.images": ("ImageRecord",),
    "visret.index": ("Changes", "Entry", "Index", "Neighbor", "QueryResult", "add_images", "build_index", "export_autofaiss",
                     "import_faiss_index", "index_from_arrays", "open_index", "remove_images", "sync_index"),
    "visret.plugins": ("hookimpl",),
}
_HOME = {name: module for module, names in _PUBLIC.items() for name in names}
_PACKAGES = {"classification", "cli", "default_plugins", "duplicates", "embedding", "evaluation", "features", "images", "index",
             "plugins", "reports", "serve"}


def __getattr__(name: str):
    import importlib

    if name in _HOME:
        value = getattr(importlib.import_module(_HOME[name]), name)
    elif name in _PACKAGES:
        value = importlib.import_module(f"visret.{name}")
    else:
        raise AttributeError(f"module 'visret' has no attribute {name!r}")
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_HOME, *_PACKAGES])


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
