"""Recipes: an extractor spec with the metric and re-ranking to use it with, saved as JSON.

``visret tune`` writes one; ``visret index DIR --recipe recipe.json`` and
``visret.build_index(DIR, **visret.read_recipe("recipe.json").index_options())`` use it. A few ship with
visret and are named instead (``--recipe photos``: retrieval of photographs without labels).
Nothing in a recipe is executed: it names registered extractors and their parameters.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from visret.index.distances import get_distance
from visret.errors import VisretError
from visret._named_files import regular_file
from visret.features._lookup import extractor_from_spec
from visret.index._rerank import parse_rerank


@dataclass
class Recipe:
    """``extractor``: ``{"name": ..., "params": {...}}``; ``scores``: what the tuner measured."""

    extractor: dict[str, Any]
    metric: str = "l2"
    rerank: str | None = None
    scores: dict[str, Any] = field(default_factory=dict)

    def check(self) -> Recipe:
        """Raise a one-line error unless every part names something that exists."""
        if self.rerank is not None and not isinstance(self.rerank, str):
            raise VisretError(f'a recipe\'s "rerank" is a re-ranking spec such as "alpha-qe:k=10", got {self.rerank!r}')
        if not isinstance(self.metric, str):
            raise VisretError(f'a recipe\'s "metric" is a name such as "l2", got {self.metric!r}')
        extractor_from_spec(self.extractor)
        get_distance(self.metric)
        parse_rerank(self.rerank)
        return self

    def index_options(self) -> dict[str, Any]:
        """Keyword arguments of ``build_index``."""
        return {"extractor": self.extractor, "metric": self.metric, "rerank": self.rerank}

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def save(self, path: str | Path) -> Path:
        path = Path(path)
        try:
            path.write_text(json.dumps(self.to_dict(), indent=2) + "\n")
        except OSError as exc:
            raise VisretError(f"cannot write {path}: {exc.strerror}") from None
        return path


#: Recipes that ship with visret, by name (``visret index DIR --recipe photos``): data in ``recipes/``.
BUILT_IN = {"photos": "photos.json"}


def read_recipe(path: str | Path) -> Recipe:
    """A recipe from a JSON file, or one that ships with visret by its name (``BUILT_IN``) where no such file is."""
    if str(path) in BUILT_IN and not Path(path).exists():
        path = Path(__file__).with_name("recipes") / BUILT_IN[str(path)]
    try:
        data = json.loads(regular_file(path, "recipe").read_text())
    except OSError as exc:
        raise VisretError(f"cannot read recipe {path}: {exc.strerror}") from None
    except ValueError:
        raise VisretError(f"recipe {path} is not JSON") from None
    except RecursionError:
        raise VisretError(f"recipe {path} is nested too deeply") from None
    if not isinstance(data, dict) or not isinstance(data.get("extractor"), dict) or not set(data) <= {"extractor", "metric", "rerank", "scores"}:
        raise VisretError(f'recipe {path} must be an object with "extractor" (and "metric", "rerank", "scores")')
    return Recipe(**data).check()
