"""The ``visret`` command line: index, query, evaluate, compare, train, classify, and what plugins provide."""

from __future__ import annotations

import importlib
import json
import logging
import sys
import time
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.table import Table
from typer.core import TyperGroup

from visret.cli.console import (
    ProgressBar, err, fail, memory_size, out, parse_cli_params, pictures_written, print_json, print_leaderboard, read_limits,
    shown,
)
from visret.errors import VisretError
from visret.features._extractor import DEFAULT_EXTRACTOR, DEFAULT_EXTRACTOR_LABEL
from visret.cli import _classification as pipeline_commands
from visret.cli._options import (
    Actors,
    AsJson,
    BatchSize,
    Depth,
    EfSearch,
    Engine,
    FromList,
    IndexPath,
    K,
    MaxBytes,
    MaxPixels,
    Nprobe,
    RayAddress,
    Rerank,
    Workers,
)
from visret.cli import _report as report_command
from visret.cli import _serve as serve_command



class _Commands(TyperGroup):
    """Turns a ``VisretError`` from any command, a plugin's too, into one line on stderr and exit 1;
    so are the errors of the machine (a read-only or full disk, memory) that no check can foresee."""

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except VisretError as exc:
            fail(str(exc))
        except OSError as exc:
            where = f": {exc.filename}" if exc.filename else ""
            fail(f"{exc.strerror or exc}{where}")
        except MemoryError:
            fail("out of memory; use smaller images or parameters, or fewer --workers")


app = typer.Typer(
    cls=_Commands,
    name="visret",
    help="Image retrieval and classification with handcrafted and deep features.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,  # help texts are plain text: "[default: 32]" stays, rich would take it for a tag
)

@app.callback()
def _root() -> None:
    """Image retrieval and classification with handcrafted and deep features."""
    _configure_logging()


def _embedding(batch_size: int, workers, max_pixels, max_bytes, engine: str, ray_address, actors) -> dict:
    """The embedding options group (``EmbedOptions``' fields) as keywords for the index functions."""
    return {"batch_size": batch_size, "workers": workers, **read_limits(max_pixels, max_bytes),
            "engine": engine, "ray_address": ray_address, "actors": actors}


#: What ``visret compare`` ranks when no extractors are named: the pretrained default and the classic descriptors.
COMPARED_EXTRACTORS = "keras/squeezenet,color-hist,hog,lbp"


@app.command("index")
def index_command(
    folder: Annotated[Optional[Path], typer.Argument(help="Folder of images; sub-folders are class labels.", show_default=False)] = None,
    from_list: FromList = None,
    extractor: Annotated[Optional[str], typer.Option("--extractor", "-e", help=f"Extractor name (see 'visret extractors') [default: {DEFAULT_EXTRACTOR_LABEL}; -e color-hist is the fast handcrafted one].")] = None,
    param: Annotated[Optional[list[str]], typer.Option("--param", "-p", help="Extractor parameter KEY=VALUE (repeatable).")] = None,
    recipe: Annotated[Optional[Path], typer.Option(help="A recipe (JSON, from 'visret tune'): extractor, metric and re-ranking; or 'photos', the one that ships for photographs without labels.")] = None,
    index: IndexPath = None,
    metric: Annotated[Optional[str], typer.Option(help="Distance: l2, cosine, l1, intersection, chi2 or hamming [default: hamming for perceptual hashes, else l2].")] = None,
    rerank: Annotated[Optional[str], typer.Option(help="Default re-ranking of queries, e.g. alpha-qe:k=10 or dba:k=3+aqe:k=5.")] = None,
    factory: Annotated[str, typer.Option(help="FAISS index-factory string (Flat, IVF1024,Flat, HNSW32, IVF4096,PQ32...) or auto.")] = "Flat",
    max_memory: Annotated[Optional[str], typer.Option(help="Memory budget for --factory auto (e.g. 2G; default 4G: past it vectors are coded).")] = None,
    nprobe: Annotated[Optional[int], typer.Option(min=1, help="IVF lists probed per query [default: the fewest whose recall@10 reaches 0.95 on a sample of the collection, measured at build].")] = None,
    ef_search: Annotated[Optional[int], typer.Option(min=1, help="HNSW search beam per query [default: the smallest whose recall@10 reaches 0.95, measured at build].")] = None,
    keep_vectors: Annotated[Optional[bool], typer.Option("--keep-vectors/--codes-only", help="Keep the exact float32 vectors beside a factory that codes them (SQ8, PQ), or only its codes [default: only the codes; re-ranking, duplicates and evaluation then read decoded vectors].", show_default=False)] = None,
    batch_size: BatchSize = 32,
    workers: Workers = None,
    max_pixels: MaxPixels = None,
    max_bytes: MaxBytes = None,
    shard_size: Annotated[int, typer.Option(min=1, help="Images per committed part (the unit of resuming).")] = 2048,
    engine: Engine = "local",
    ray_address: RayAddress = None,
    actors: Actors = None,
) -> None:
    """Embed every image of FOLDER (or of --from-list) and save them as an index (an interrupted run resumes)."""
    from visret.index._building import build_index
    from visret.features._lookup import resolve_extractor

    if (folder is None) == (from_list is None):
        raise VisretError("give a FOLDER of images or --from-list FILE (one of them)")
    if recipe is not None:
        if extractor is not None or param or metric is not None or rerank is not None:
            raise VisretError("--recipe sets the extractor, metric and re-ranking: pass none of --extractor, --param, --metric, --rerank with it")
        from visret.evaluation._recipe import read_recipe

        extractor, metric, rerank = read_recipe(recipe).index_options().values()
    params = None if recipe else parse_cli_params(param)
    if params and extractor is None:
        raise VisretError("--param sets a parameter of the extractor named with --extractor: add -e NAME")
    chosen = resolve_extractor(extractor or DEFAULT_EXTRACTOR, params)  # checked before the bar
    embedding = _embedding(batch_size, workers, max_pixels, max_bytes, engine, ray_address, actors)
    memory = memory_size(max_memory)
    start = time.perf_counter()
    with ProgressBar("indexing") as bar:
        built = build_index(
            folder or from_list, chosen, index, metric=metric, progress=bar.update, factory=factory, max_memory=memory,
            nprobe=nprobe, ef_search=ef_search, rerank=rerank, keep_vectors=keep_vectors, shard_size=shard_size, **embedding,
        )
    seconds = time.perf_counter() - start
    build = built.manifest["build"]
    rate = build["indexed"] / seconds if seconds > 0 else 0.0
    out.print(
        f"indexed {build['indexed']} images, skipped {build['skipped']}, "
        f"{seconds:.1f} s ({rate:.1f} images/s) -> {shown(built.path)} \\[{shown(built.manifest['factory'])}]"
    )


def _report_changes(changes, index_path) -> None:
    out.print(
        f"added {changes.added}, removed {changes.removed}, unchanged {changes.unchanged}, "
        f"skipped {changes.skipped}, {changes.seconds:.1f} s -> {shown(index_path)}"
    )


def _embed_changes(label: str, change, target, index, embedding: dict) -> None:
    """Run ``add_images`` or ``sync_index`` under a progress bar and print what changed."""
    from visret.index._index import default_index_path

    with ProgressBar(label) as bar:
        changes = change(target, index, progress=bar.update, **embedding)
    _report_changes(changes, index or default_index_path())


@app.command("add")
def add_command(
    inputs: Annotated[Optional[list[Path]], typer.Argument(help="Folders, image lists (.csv, .parquet) and image files to add.", show_default=False)] = None,
    from_list: FromList = None,
    index: IndexPath = None,
    batch_size: BatchSize = 32,
    workers: Workers = None,
    max_pixels: MaxPixels = None,
    max_bytes: MaxBytes = None,
    engine: Engine = "local",
    ray_address: RayAddress = None,
    actors: Actors = None,
) -> None:
    """Embed and add only what is new (by content hash); what is already indexed is skipped."""
    from visret.index._changes import add_images

    inputs = [*(inputs or []), *([from_list] if from_list else [])]
    if not inputs:
        raise VisretError("give folders, image files or --from-list FILE to add")
    _embed_changes("adding", add_images, inputs, index, _embedding(batch_size, workers, max_pixels, max_bytes, engine, ray_address, actors))


@app.command("remove")
def remove_command(
    paths: Annotated[list[Path], typer.Argument(help="Indexed files, or folders whose files to remove.")],
    index: IndexPath = None,
) -> None:
    """Remove entries from the index."""
    from visret.index._index import default_index_path
    from visret.index._changes import remove_images

    _report_changes(remove_images(paths, index), index or default_index_path())


@app.command("sync")
def sync_command(
    folder: Annotated[Path, typer.Argument(help="Folder whose indexed entries should match its files, or an image list (its files are the scope).")],
    index: IndexPath = None,
    batch_size: BatchSize = 32,
    workers: Workers = None,
    max_pixels: MaxPixels = None,
    max_bytes: MaxBytes = None,
    engine: Engine = "local",
    ray_address: RayAddress = None,
    actors: Actors = None,
) -> None:
    """Add new and changed files of FOLDER, remove entries of deleted ones."""
    from visret.index._changes import sync_index

    _embed_changes("syncing", sync_index, folder, index, _embedding(batch_size, workers, max_pixels, max_bytes, engine, ray_address, actors))


@app.command("export")
def export_command(
    folder: Annotated[Path, typer.Argument(metavar="OUT", help="New folder to write the export to.")],
    format: Annotated[str, typer.Option("--format", help="Layout: autofaiss (embeddings/*.npy + metadata/*.parquet, as clip-retrieval writes).")] = "autofaiss",
    index: IndexPath = None,
) -> None:
    """Write the index's vectors and metadata for tools that build FAISS indexes at scale (autofaiss)."""
    from visret.index._autofaiss import FORMAT, export_autofaiss

    if format != FORMAT:
        raise VisretError(f"unknown export format {format!r}; the one there is: {FORMAT}")
    with ProgressBar("exporting") as bar:
        done = export_autofaiss(folder, index, progress=bar.update)
    out.print(f"exported {done.count} vectors ({done.dim}-d, metric {done.metric}) in {done.files} files, "
              f"{done.seconds:.1f} s -> {shown(done.path)}")


@app.command("import-index")
def import_index_command(
    faiss_file: Annotated[Path, typer.Argument(help="A FAISS index built from this index's export (e.g. by autofaiss).")],
    index: IndexPath = None,
    metadata: Annotated[Optional[Path], typer.Option(help="The export's metadata folder: maps the FAISS index's rows to entries [default: the index's own order].")] = None,
) -> None:
    """Attach a FAISS index built elsewhere (its dimension, metric and count are checked)."""
    from visret.index._autofaiss import import_faiss_index
    from visret.index._index import default_index_path

    manifest = import_faiss_index(faiss_file, index, metadata)
    out.print(f"attached {shown(faiss_file)} ({manifest['imported']['type']}, {manifest['count']} vectors) -> {shown(index or default_index_path())}")


@app.command("new-plugin")
def new_plugin_command(
    name: Annotated[str, typer.Argument(help="The plugin's name, e.g. texture-plus: package visret-texture-plus.")],
    into: Annotated[Path, typer.Option("--out", help="Folder to write the package into.")] = Path("."),
) -> None:
    """Start a plugin: a package with an extractor, its entry point and tests running visret's conformance kit."""
    from visret.plugins._new_plugin import write_plugin

    folder = write_plugin(name, into)
    out.print(f"wrote {shown(folder)}: pip install -e '{shown(folder)}[test]' && pytest {shown(folder)}")


def _cutoffs(text: str) -> list[int]:
    try:
        values = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise VisretError(f"cut-offs must be integers separated by commas, got {text!r}") from None
    if not values or min(values) < 1:
        raise VisretError(f"cut-offs must be integers of at least 1, got {text!r}")
    return values


@app.command("query")
def query_command(
    images: Annotated[list[Path], typer.Argument(help="Query image files.")],
    index: IndexPath = None,
    k: K = 5,
    as_json: AsJson = False,
    montage: Annotated[Optional[Path], typer.Option(help="Write a PNG of the query and its neighbours here; with several queries OUT-1.png, OUT-2.png and so on.")] = None,
    nprobe: Nprobe = None,
    ef_search: EfSearch = None,
    rerank: Rerank = None,
) -> None:
    """Find the indexed images nearest to each query image."""
    from visret.index._index import open_index

    with open_index(index) as opened:
        opened.set_search_params(nprobe, ef_search)
        results = opened.query_batch([str(p) for p in images], k=k, rerank=rerank)
        classes = set(opened.classes.tolist())
    if montage is not None:
        from visret.reports.plots import save_montage

        written = []
        for n, (image, result) in enumerate(zip(images, results), start=1):
            target = montage if len(images) == 1 else montage.with_name(f"{montage.stem}-{n}{montage.suffix}")
            label = image.parent.name if image.parent.name in classes else None  # an ImageFolder query knows its class
            written.append(save_montage(result, target, query_label=label))
        pictures_written(written)
    if as_json:
        print_json([r.to_dict() for r in results])
        return
    for result in results:
        title = shown(result.query) + (f"  ->  predicted: [bold]{shown(result.prediction)}[/]" if result.prediction else "")
        table = Table("rank", "path", "label", "distance", title=title, title_justify="left")
        table.columns[1].overflow = "fold"
        for rank, n in enumerate(result.neighbors, start=1):
            table.add_row(str(rank), shown(n.path), shown(n.label or ""), f"{n.distance:.4f}")
        out.print(table)


def _print_report(report) -> None:
    summary = Table("metric", "value", title=f"k-NN evaluation ({shown(report.describe())})", title_justify="left")
    for key, value in report.summary().items():
        summary.add_row(key, f"{value:.4f}")
    summary.add_row("skipped", str(report.skipped))
    out.print(summary)
    per_class = Table("class", "precision", "recall", "f1", "support", title="per class", title_justify="left")
    for label, scores in report.per_class.items():
        per_class.add_row(
            shown(label), f"{scores['precision']:.3f}", f"{scores['recall']:.3f}", f"{scores['f1']:.3f}", str(scores["support"])
        )
    out.print(per_class)


def report_subject(index: Path | None) -> str:
    """What a picture of an index's evaluation is about: the index's folder name."""
    from visret.index._index import default_index_path

    return f"the index {(index or default_index_path()).name}"


@app.command("evaluate")
def evaluate_command(
    test_dir: Annotated[
        Optional[Path], typer.Argument(help="Labelled test folder; omit it for leave-one-out over the index.")
    ] = None,
    index: IndexPath = None,
    k: K = 5,
    at: Annotated[str, typer.Option("--at", help="Cut-offs for P@k, R@k, mAP@k, nDCG@k.")] = "1,5,10",
    weights: Annotated[str, typer.Option(help="Vote weighting: uniform or distance.")] = "uniform",
    workers: Workers = None,
    confusion: Annotated[Optional[Path], typer.Option(help="Write a confusion-matrix heat map (PNG) here.")] = None,
    tsne: Annotated[Optional[Path], typer.Option(help="Write a t-SNE map of the query embeddings (PNG) here.")] = None,
    depth: Depth = None,
    rerank: Rerank = None,
    as_json: AsJson = False,
) -> None:
    """k-NN accuracy and retrieval quality of the index on a labelled test folder (or leave-one-out)."""
    from visret.evaluation._knn import evaluate_knn

    with ProgressBar("evaluating") as bar:
        report, embeddings, labels = evaluate_knn(
            test_dir, index, k=k, weights=weights, at=_cutoffs(at), workers=workers, return_embeddings=True,
            depth=depth, rerank=rerank, progress=bar.update,
        )
    written = []
    if confusion is not None:
        from visret.reports.plots import save_confusion

        written.append(save_confusion(report.confusion_matrix, report.classes, confusion,
                                      title=f"confusion matrix of {report_subject(index)} ({report.protocol}, {k}-NN)"))
    if tsne is not None:
        from visret.reports.plots import save_tsne

        written.append(save_tsne(embeddings, labels, tsne))
    if as_json:
        print_json(report.to_dict())
    else:
        _print_report(report)
    pictures_written(written)


@app.command("compare")
def compare_command(
    data_dir: Annotated[Path, typer.Argument(help="Labelled folder (holdout: with train/ and test/ inside).")],
    extractors: Annotated[Optional[str], typer.Option("--extractors", "-e", help=f"Retrieval: extractor names, comma-separated [default: {COMPARED_EXTRACTORS}].")] = None,
    pipelines: Annotated[Optional[str], typer.Option("--pipelines", help="Classification: pipelines to train and test, e.g. hog+linear-svm,lbp+random-forest,cnn/lenet5,keras/mobilenet_v2+transfer.")] = None,
    protocol: Annotated[str, typer.Option(help="split, kfold, loo or holdout.")] = "split",
    test_size: Annotated[float, typer.Option(help="Query share of each class for split (with --pipelines: the test share).")] = 0.2,
    folds: Annotated[int, typer.Option(min=2, help="Folds for kfold.")] = 5,
    seed: Annotated[int, typer.Option(help="Seed of the split or folds.")] = 0,
    k: Annotated[str, typer.Option("--at", "--k", help="Cut-offs for P@k, R@k, mAP@k, nDCG@k, as in evaluate (--k: its older name).")] = "1,5,10",
    neighbors: Annotated[int, typer.Option(min=1, help="Neighbours in the k-NN vote (accuracy).")] = 5,
    workers: Workers = None,
    as_json: AsJson = False,
    markdown: Annotated[bool, typer.Option("--markdown", help="Print a Markdown table (--format markdown).")] = False,
    as_csv: Annotated[bool, typer.Option("--csv", help="Print CSV (--format csv).")] = False,
    report_format: Annotated[Optional[str], typer.Option("--format", help="Report format: table, json, markdown, csv, html, or one a plugin adds [default: table].")] = None,
    pr_curve: Annotated[Optional[Path], typer.Option(help="Write the precision-recall curves (PNG) here.")] = None,
    html: Annotated[Optional[Path], typer.Option(help="Write an HTML report (tables and pictures) here.")] = None,
    depth: Depth = None,
    rerank: Rerank = None,
    test_dir: pipeline_commands.TestDir = None,
    val_split: pipeline_commands.ValSplit = 0.1,
    tta: pipeline_commands.Tta = 0,
    epochs: pipeline_commands.Epochs = None,
    fine_tune_epochs: pipeline_commands.FineTuneEpochs = None,
    budget_minutes: pipeline_commands.BudgetMinutes = None,
    augment: pipeline_commands.Augment = None,
    mixup: pipeline_commands.Mixup = None,
    save_dir: Annotated[Optional[Path], typer.Option(help="Pipelines: save each trained pipeline and its report in this folder as it finishes; run again, the finished ones are not trained again.")] = None,
) -> None:
    """A leaderboard on one folder, everything under the same split: extractors by k-NN retrieval
    (--extractors), or classification pipelines trained and tested (--pipelines)."""
    from visret.evaluation._comparison import compare
    from visret.reports.formats import chosen_format

    shown_as = chosen_format(report_format, as_json, as_csv, markdown)  # a bad name fails before any work
    if pipelines is not None:
        if extractors is not None:
            raise VisretError("compare --extractors (retrieval) or --pipelines (classification), not both")
        pipeline_commands.compare_command(
            data_dir, pipelines, test_dir, val_split, test_size, seed, tta, workers, save_dir, html, shown_as, budget_minutes,
            epochs=epochs, fine_tune_epochs=fine_tune_epochs, augment=augment, mixup_alpha=mixup,
        )
        return
    names = [name.strip() for name in (extractors or COMPARED_EXTRACTORS).split(",") if name.strip()]
    with ProgressBar("comparing") as bar:
        result = compare(
            data_dir, names, protocol=protocol, test_size=test_size, folds=folds, seed=seed, k=neighbors, at=_cutoffs(k),
            workers=workers, depth=depth, rerank=rerank, progress=bar.update,
        )
    written = []
    if pr_curve is not None or html is not None:
        from visret.reports.plots import save_pr_curves

        curves = {name: report.pr_curve for name, report in result.reports.items()}
        written.append(save_pr_curves(curves, pr_curve or html.with_suffix(".pr.png")))
    if html is not None:
        from visret.reports._html import write_html
        from visret.reports.plots import save_confusion

        best = max(result.reports, key=lambda name: result.reports[name].map)
        confusion = save_confusion(result.reports[best].confusion_matrix, result.reports[best].classes, html.with_suffix(".confusion.png"), title=f"confusion matrix of {best}")
        settings = ", ".join(f"{k}={v}" for k, v in result.settings.items())
        pictures = {"precision-recall": written[0], f"confusion matrix: {best}": confusion}
        written += [confusion, write_html(html, f"visret comparison ({protocol})", settings, result.leaderboard(compact=True), pictures)]
    ranking = "full ranking" if depth is None else f"top-{depth} ranking"
    reranked = f", re-ranked by {result.settings['rerank']}" if result.settings["rerank"] else ""
    title = f"comparison ({protocol}, {result.settings['images']} images, {ranking}{reranked}; best in green)"
    print_leaderboard(result, result.leaderboard(compact=True), shown_as, title, SHORT_HEADERS, "index_bytes")
    pictures_written(written)


SHORT_HEADERS = {
    "supervised": "labels",
    "accuracy": "acc",
    "balanced_accuracy": "bal acc",
    "map": "mAP",
    "extraction_images_per_s": "img/s",
    "query_ms_p50": "query ms",
    "index_bytes": "MiB",
}


@app.command("info")
def info_command(
    index: IndexPath = None,
    as_json: AsJson = False,
    recall: Annotated[bool, typer.Option("--recall", help="Measure recall@10 against exact search on a sample.")] = False,
    verify: Annotated[bool, typer.Option("--verify", help="Checksum every file, large ones and shards included.")] = False,
) -> None:
    """What an index holds and how it was built."""
    from visret.index._index import open_index

    with open_index(index, verify=verify) as opened:
        info = opened.info()
        if recall:
            info["recall_at_10"] = opened.recall_at_10()
    if as_json:
        print_json(info)
        return
    table = Table("field", "value", show_header=False)
    extractor = info["extractor"]
    knobs = {knob: value for knob, value in info["search"].items() if knob != "recall_at_10"}
    rows = {
        "path": info["path"],
        "entries": info["count"],
        "extractor": f"{extractor['name']} {json.dumps(extractor['params'])}",
        "dim": info["dim"],
        "metric": info["metric"],
        "factory": " ".join([info["factory"], *([json.dumps(knobs)] if knobs else [])]),
        "re-ranking": info.get("rerank") or "none",
        "shards": "none: vectors kept only as the index's codes" if info.get("stored_as") == "codes" else len(info["shards"]),
        "removed, not yet compacted": info["tombstones"],
        "classes": len(info["classes"]),
        "bytes": info["bytes"],
        "built": json.dumps(info["build"]),
        "visret": info["visret_version"],
    }
    if "recall_at_10" in info["search"]:
        rows["recall@10 at build (sample)"] = f"{info['search']['recall_at_10']:.4f}"
    if "recall_at_10" in info:
        against = "every list probed" if info.get("stored_as") == "codes" else "exact"
        rows[f"recall@10 (vs {against}, sample)"] = f"{info['recall_at_10']:.4f}"
    for key, value in rows.items():
        table.add_row(key, shown(value))
    out.print(table)


#: The modules that declare visret's extension points (``ExtensionPoint``), so ``visret plugins`` lists every kind.
EXTENSION_POINT_MODULES = ("visret.features._lookup", "visret.classification._pipeline", "visret.images.loaders",
                           "visret.reports.formats", "visret.index.backends")


@app.command("plugins")
def plugins_command(as_json: AsJson = False) -> None:
    """The loaded plugins and what each registered."""
    from visret.plugins._registry import plugin_report

    for module in EXTENSION_POINT_MODULES:  # declared where their base classes live, which a lazy start has not imported
        importlib.import_module(module)
    rows = plugin_report()
    if as_json:
        print_json(rows)
        return
    table = Table("plugin", "version", "status", "hooks", "registered")
    for row in rows:
        registered = ", ".join(row["extractors"] + row["classifiers"] + [f"pipeline {p}" for p in row["pipelines"]]
                               + [f"loader {name}" for name in row["loaders"]] + [f"format {name}" for name in row["report_formats"]]
                               + [f"backend {name}" for name in row["backends"]])
        status = row["status"] if row["error"] is None else f"[red]failed[/]: {shown(row['error'])}"
        table.add_row(shown(row["name"]), shown(row["version"] or ""), status, ", ".join(row["hooks"]), shown(registered))
    out.print(table)


@app.command("tune")
def tune_command(
    data_dir: Annotated[Path, typer.Argument(help="Labelled folder (one sub-folder per class).")],
    test_dir: Annotated[Optional[Path], typer.Option(help="Labelled folder of held-out queries [default: a seeded --test-size split].")] = None,
    extractors: Annotated[Optional[str], typer.Option("--extractors", "-e", help="Base extractors to try, comma-separated [default: the handcrafted suite].")] = None,
    budget_minutes: Annotated[Optional[float], typer.Option(min=0.1, help="Stop searching after this long (the best so far is kept).")] = None,
    recipe_path: Annotated[Path, typer.Option("--out", help="Where to write the winning recipe (JSON).")] = Path("recipe.json"),
    test_size: Annotated[float, typer.Option(help="Held-out share of each class when there is no --test-dir.")] = 0.2,
    supervised: Annotated[bool, typer.Option("--supervised/--no-supervised", help="Try steps that learn from the labels (LDA).")] = True,
    rerank: Annotated[bool, typer.Option("--rerank/--no-rerank", help="Try re-ranking methods.")] = True,
    seed: Annotated[int, typer.Option(help="Seed of the splits.")] = 0,
    workers: Workers = None,
    as_json: AsJson = False,
) -> None:
    """Search extractors, normalisations, combinations, post-processing and re-ranking for the best recipe."""
    from visret.evaluation._tuning import BASES, Tuner

    names = [n.strip() for n in extractors.split(",") if n.strip()] if extractors else list(BASES)
    with ProgressBar("tuning") as bar:
        tuner = Tuner(data_dir, test_dir=test_dir, extractors=names, test_size=test_size, seed=seed, workers=workers,
                      budget_seconds=None if budget_minutes is None else budget_minutes * 60, progress=bar.stages)
        result = tuner.run(supervised=supervised, rerank=rerank)
    path = result.recipe.save(recipe_path)
    if as_json:
        print_json(result.to_dict())
    else:
        table = Table("extractor at its defaults", "held-out mAP", title="the same held-out queries", title_justify="left")
        for name, score in sorted(result.defaults.items(), key=lambda item: -item[1]):
            table.add_row(shown(name), f"{score:.4f}")
        table.add_row("[bold]tuned recipe[/]", f"[bold]{result.held_out.map:.4f}[/]")
        out.print(table)
    if not result.finished:
        err.print("the budget ran out before every stage was tried; the recipe is the best found so far")
    err.print(f"wrote {shown(path)}: {shown(result.summary())}", soft_wrap=True)


@app.command("duplicates")
def duplicates_command(
    folder: Annotated[Optional[Path], typer.Argument(help="Folder of images (or use --index).")] = None,
    index: Annotated[Optional[Path], typer.Option("--index", help="Find duplicates among an index's entries (its stored vectors; no image is read).")] = None,
    extractor: Annotated[Optional[str], typer.Option("--extractor", "-e", help="Extractor [default: gist for a folder, the index's own for --index].")] = None,
    param: Annotated[Optional[list[str]], typer.Option("--param", "-p", help="Extractor parameter KEY=VALUE (repeatable).")] = None,
    threshold: Annotated[Optional[float], typer.Option(help="Largest distance between duplicates: bits for hashes, cosine distance for float features [default: the extractor's calibrated one, else automatic].")] = None,
    auto_threshold: Annotated[bool, typer.Option("--auto-threshold", help="Choose the threshold from the gap in nearest-neighbour distances.")] = False,
    keep: Annotated[str, typer.Option(help="Which file of each group to keep: first (path order), largest (pixels), newest.")] = "first",
    colour_check: Annotated[bool, typer.Option("--colour-check/--no-colour-check", help="Keep colourful images whose hues disagree apart (reads the candidates again).")] = True,
    as_json: AsJson = False,
    as_csv: Annotated[bool, typer.Option("--csv", help="Print CSV (one row per file of each group).")] = False,
    list_removable: Annotated[bool, typer.Option("--list-removable", help="Print only the files the --keep rule would remove, one per line.")] = False,
    montage: Annotated[Optional[Path], typer.Option(help="Write a PNG of each group into this folder.")] = None,
    html: Annotated[Optional[Path], typer.Option("--html", help="Write a self-contained HTML report here.")] = None,
    workers: Workers = None,
    max_pixels: MaxPixels = None,
    max_bytes: MaxBytes = None,
) -> None:
    """Groups of exact and near-duplicate images (nothing is deleted or moved)."""
    from visret.duplicates import find_duplicates

    if (folder is None) == (index is None):
        raise VisretError("give a folder or --index, not both and not neither")
    if sum([as_json, as_csv, list_removable]) > 1:
        raise VisretError("choose one of --json, --csv and --list-removable")
    with ProgressBar("embedding") as bar:
        report = find_duplicates(
            folder if folder is not None else index, extractor, parse_cli_params(param) or None, threshold, auto_threshold, keep,
            workers=workers, progress=bar.stages, colour_check=colour_check, **read_limits(max_pixels, max_bytes),
        )
    pictures = []
    if montage is not None:
        from visret.reports.plots import save_duplicate_group

        pictures = [save_duplicate_group(group, montage / f"group-{n:05d}.png") for n, group in enumerate(report.groups, start=1)]
    if html is not None:
        from visret.duplicates.page import write_page

        pictures.append(write_page(report, html))
    pictures_written(pictures)
    if as_json:
        print_json(report.to_dict())
    elif as_csv:
        sys.stdout.write(report.to_csv())
    elif list_removable:
        sys.stdout.write("".join(f"{path}\n" for path in report.removable()))
    else:
        for number, group in enumerate(report.groups, start=1):
            table = Table("", "path", "distance", title=f"group {number}: {group.kind}", title_justify="left")
            table.columns[1].overflow = "fold"
            closest = {path: pair.distance for path, pair in group.closest().items()}
            for path, role in group.ordered():
                table.add_row(role, shown(path), f"{closest.get(path, 0):g}")
            out.print(table)
    if report.skipped:
        err.print(f"skipped {report.skipped} unreadable files")
    err.print(shown(report.summary()), soft_wrap=True)


@app.command("extractors")
def extractors_command(as_json: AsJson = False) -> None:
    """Every available extractor with its parameters and defaults, and whether it works with no download."""
    from visret.features._lookup import extractor_classes

    rows = [
        {"name": name, "description": cls.summary(), "params": cls.param_defaults(), "offline": cls.offline}
        for name, cls in extractor_classes().items()
    ]
    if as_json:
        print_json(rows)
        return
    table = Table("extractor", "offline", "parameters (defaults)", "description")
    for row in rows:
        params = ", ".join(f"{k}={json.dumps(v)}" for k, v in row["params"].items())
        table.add_row(shown(row["name"]), "yes" if row["offline"] else "download", shown(params), shown(row["description"]))
    out.print(table)


class _StderrHandler(logging.Handler):
    """Warnings as one plain line each, on whatever ``sys.stderr`` is now (rich may redirect it)."""

    def emit(self, record: logging.LogRecord) -> None:
        sys.stderr.write(f"{record.levelname.lower()}: {record.getMessage()}\n")


def _configure_logging() -> None:
    logger = logging.getLogger("visret")
    if not any(isinstance(h, _StderrHandler) for h in logger.handlers):
        logger.addHandler(_StderrHandler())
    logger.setLevel(logging.INFO)
    logger.propagate = False


pipeline_commands.register(app)
serve_command.register(app)
report_command.register(app)

_plugin_commands_added = False


def add_plugin_commands() -> None:
    """Let every plugin add its commands to ``app``, once."""
    global _plugin_commands_added
    if not _plugin_commands_added:
        from visret.plugins._registry import call_each_plugin, load_plugins

        _plugin_commands_added = True
        load_plugins()
        call_each_plugin("register_commands", lambda plugin_name: app)


def main() -> None:
    _configure_logging()  # plugin loading below may already warn
    try:
        add_plugin_commands()
    except VisretError as exc:  # e.g. two plugins registering one name
        err.print(f"error: {exc}", markup=False, soft_wrap=True)
        raise SystemExit(1) from None
    app()
