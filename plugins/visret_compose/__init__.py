"""visret's composition extractors: ``combine`` (concatenate weighted blocks) and ``post`` (post-processing)."""

from visret import hookimpl
from visret_compose.combine import Combine
from visret_compose.post import Postprocess


@hookimpl
def register_extractors(register):
    register(Combine)
    register(Postprocess)
