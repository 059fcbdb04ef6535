"""An example third-party plugin: a mean-colour extractor and a ``hello`` command."""

from typing import ClassVar

import numpy as np
import typer

import visret


class MeanColor(visret.FeatureExtractor):
    """Mean red, green and blue of the image, in [0, 1]."""

    name: ClassVar[str] = "example/mean-color"

    def __init__(self, size: int = 32):
        self.size = size

    @property
    def input_spec(self):
        return visret.InputSpec(mode="RGB", size=(self.size, self.size))

    @property
    def dim(self):
        return 3

    def extract(self, images):
        return (np.stack(images).mean(axis=(1, 2)) / 255.0).astype(np.float32)


@visret.hookimpl
def register_extractors(register):
    register(MeanColor)


@visret.hookimpl
def register_commands(app):
    @app.command()
    def hello(name: str = "world"):
        """Say hello from the example plugin."""
        typer.echo(f"hello {name} from visret-plugin-example")
