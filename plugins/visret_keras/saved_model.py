"""A feature extraction network cut from a trained ``.keras`` model: ``model:PATH``."""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

from visret_keras import runtime
from visret_keras.architectures import cut_before_head
from visret_keras.base import KerasExtractor
from visret_keras.derived import sha256_file


class SavedModel(KerasExtractor):
    """A saved Keras model (loaded in safe mode) cut before its classification head.

    Cut at ``layer`` (a name), or drop the last ``drop`` layers, or by default take the input of
    the last Dense layer. ``rescale`` multiplies pixel values (0-255) before the model, for
    models trained on other ranges. The file's SHA-256 is recorded, and checked when reopened.
    """

    name: ClassVar[str] = "model"
    shorthand: ClassVar[str] = "path"

    def __init__(self, path: str = "", layer: str | None = None, drop: int | None = None, rescale: float = 1.0, normalize: bool = False, sha256: str | None = None):
        self.path = path
        self.layer = layer
        self.drop = drop
        self.rescale = rescale
        self.normalize = normalize
        self.sha256 = sha256

    def validate(self) -> None:
        file = Path(str(self.path)).expanduser()
        if not self.path or not file.is_file():
            raise ValueError(f"path must be a saved .keras model file, got {self.path!r}")
        if file.suffix != ".keras":
            raise ValueError(f"{self.path} is not a .keras file (the only format loaded, in safe mode)")
        if self.layer is not None and self.drop is not None:
            raise ValueError("pass layer or drop, not both")
        if self.sha256 is not None and sha256_file(file) != self.sha256:
            raise ValueError(f"{self.path} has changed since the index was built (SHA-256 differs)")

    def get_config(self) -> dict[str, Any]:
        """What an index records: the model file's absolute path and its SHA-256, checked on reopening."""
        config = super().get_config()
        params = config["params"]
        params["path"] = str(Path(str(self.path)).expanduser().absolute())
        if params["sha256"] is None:
            params["sha256"] = sha256_file(Path(params["path"]))
        return config

    def preprocess(self, batch):
        return batch * self.rescale if self.rescale != 1.0 else batch

    def preprocessing_layers(self) -> list:
        return [runtime.keras().layers.Rescaling(self.rescale)] if self.rescale != 1.0 else []

    def build_model(self):
        model = runtime.load_model(Path(str(self.path)).expanduser())
        return cut_before_head(model, layer=self.layer, drop=self.drop)
