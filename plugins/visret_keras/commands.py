"""``visret summary``, added by this plugin so the core never imports TensorFlow."""

from __future__ import annotations

from typing import Annotated, Optional

import typer
from rich.table import Table

from visret.cli.console import out, parse_cli_params, print_json, shown


def register(app: typer.Typer) -> None:
    @app.command("summary")
    def summary_command(
        model: Annotated[str, typer.Argument(help="A .keras file, or a CNN extractor name (cnn/lenet5, keras/mobilenet_v2, model:PATH).")],
        param: Annotated[Optional[list[str]], typer.Option("--param", "-p", help="Extractor parameter KEY=VALUE.")] = None,
        as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
    ) -> None:
        """Layers of a CNN with output shapes and parameter counts, trainable and frozen."""
        from visret_keras.summary import summarise

        summary = summarise(network(model, parse_cli_params(param)))
        if as_json:
            print_json(summary)
            return
        table = Table("layer", "type", "output shape", "parameters", "trainable",
                      title=f"{shown(summary['name'])}: input {shown(summary['input_shape'])}", title_justify="left")
        for row in summary["layers"]:
            table.add_row("  " * row["depth"] + shown(row["layer"]), row["type"], row["output_shape"], f"{row['params']:,}", f"{row['trainable']:,}")
        out.print(table)
        out.print(f"total {summary['total']:,} parameters: {summary['trainable']:,} trainable, {summary['frozen']:,} frozen")


def network(name: str, params: dict):
    """The Keras model behind a ``.keras`` file or a CNN extractor (ImageNet weights only when asked)."""
    from pathlib import Path

    from visret import VisretError, get_extractor
    from visret_keras import runtime
    from visret_keras.base import KerasExtractor

    if name.endswith(".keras") and not name.startswith("model:"):  # model:PATH is the extractor cut from it
        if params:
            raise VisretError("--param applies to an extractor name, not to a .keras file")
        path = Path(name).expanduser()
        if not path.is_file():
            raise VisretError(f"{name} is not a file")
        return runtime.load_model(path)
    extractor = get_extractor(name, **params)
    if not isinstance(extractor, KerasExtractor):
        raise VisretError(f"{name} is not a CNN (a .keras file, cnn/*, keras/* or model:PATH)")
    if "weights" in extractor.param_defaults() and "weights" not in params:
        extractor = get_extractor(name, **{**params, "weights": "none"})  # the layers are the same; nothing to download
    return extractor.model
