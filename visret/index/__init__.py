"""The index: a crash-safe folder of embeddings (``_store``) searched exactly or through a backend's
structure (FAISS by default, ``backends``), with re-ranking, k-NN voting, and the autofaiss layout.

Its public names are imported on first use (``visret._lazy``): a query opens and searches an index
without importing what builds, changes or exports one.
"""

from typing import TYPE_CHECKING

from visret._lazy import lazy_face

if TYPE_CHECKING:
    from visret.index._autofaiss import Export, export_autofaiss, import_faiss_index
    from visret.index._building import build_index, index_from_arrays
    from visret.index._changes import Changes, add_images, remove_images, sync_index
    from visret.index._index import Index, open_index
    from visret.index._reader import DEFAULT_INDEX, Entry, Neighbor, QueryResult, default_index_path
    from visret.index._search import ExactSearch
    from visret.index._voting import WEIGHTINGS, vote
    from visret.index.backends import BACKENDS, IndexBackend, SearchStructure
    from visret.index.distances import Distance, get_distance

__getattr__, __dir__ = lazy_face(__name__, __file__, globals())

__all__ = [
    "BACKENDS", "DEFAULT_INDEX", "WEIGHTINGS", "Changes", "ExactSearch", "Distance", "Entry", "Export", "Index", "IndexBackend", "Neighbor",
    "QueryResult", "SearchStructure", "add_images", "build_index", "default_index_path", "export_autofaiss",
    "get_distance", "import_faiss_index", "index_from_arrays", "open_index", "remove_images", "sync_index", "vote",
]
