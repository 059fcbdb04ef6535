"""The hooks a visret plugin can implement.

Each hook receives a ``register`` callback (or the typer app) so that a plugin states what it
adds and visret can attribute every name to the plugin that registered it.
"""

import pluggy

hookspec = pluggy.HookspecMarker("visret")
hookimpl = pluggy.HookimplMarker("visret")


@hookspec
def register_extractors(register):
    """Register feature extractors: call ``register(ExtractorClass)`` once per class.

    The class must subclass ``visret.FeatureExtractor`` and set a unique ``name``.
    """


@hookspec
def register_classifiers(register):
    """Register classifier heads: call ``register(ClassifierClass)`` once per class.

    The class must subclass ``visret.Classifier`` and set a unique ``name``.
    """


@hookspec
def register_pipelines(register):
    """Register kinds of classification pipeline: call ``register(PipelineClass)`` once per kind.

    The class must subclass ``visret.Pipeline`` and set a unique ``name``; its ``recognises``
    and ``load`` let ``visret.load_pipeline`` open the files it saves, and ``trains`` and
    ``train`` let ``visret train --model NAME`` train the networks it names.
    """


@hookspec
def register_dataset_loaders(register):
    """Register sources of images: call ``register(LoaderClass)`` once per class.

    The class must subclass ``visret.images.loaders.DatasetLoader``, set a unique ``name`` (a source
    ``NAME:rest`` goes to it) and implement ``records``; ``recognises`` claims sources without a
    prefix (a file type, say).
    """


@hookspec
def register_report_formats(register):
    """Register formats for leaderboards: call ``register(FormatClass)`` once per class.

    The class must subclass ``visret.reports.formats.ReportFormat``, set a unique ``name`` (what
    ``visret compare --format NAME`` asks for) and implement ``render(view) -> str``.
    """


@hookspec
def register_index_backends(register):
    """Register index backends: call ``register(BackendClass)`` once per class.

    The class must subclass ``visret.index.backends.IndexBackend``, set a unique ``name`` (``--factory
    NAME:SPEC`` picks it) and implement ``build`` and ``read``, which return a
    ``visret.index.backends.SearchStructure``.
    """


@hookspec
def register_commands(app):
    """Add commands to the ``visret`` typer app: ``@app.command()`` on your functions."""
