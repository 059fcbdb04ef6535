"""A feature extraction network exported to ONNX and run by ONNX Runtime: CNN features without TensorFlow.

Keras stays the source of truth. A CNN extractor's network, its preprocessing included as layers,
is exported to ONNX on this machine, checked against the Keras model on a probe batch and kept in
the user's cache (``visret_keras.derived``); indexes and pipelines record which network they used,
never the graph. Queries, extraction workers and servers run it with ONNX Runtime, which starts in
a fraction of a second where TensorFlow takes ten (``benchmarks/light_runtime.py``).
``VISRET_RUNTIME=keras`` runs the Keras model instead (e.g. on a GPU that TensorFlow uses and ONNX
Runtime's CPU build does not).

A batch is cut into chunks that run side by side, one core each, on one session without an intra-op
thread pool: ONNX Runtime's own pool splits every layer across cores and waits for the slowest, so one
core busy decoding images halves it (on 2 cores, SqueezeNet went from 3.5 to 6.9 ms an image while
one thread decoded beside it), where whole chunks on their own cores lose only what the decoding takes
(``benchmarks/index_pace.py``).
"""

from __future__ import annotations

import functools
import logging
import os
import warnings
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from visret_keras import runtime

log = logging.getLogger("visret")

OPSET = 17


def wanted() -> bool:
    """Whether the light runtime runs exported networks (``VISRET_RUNTIME=keras`` says no)."""
    return os.environ.get("VISRET_RUNTIME", "onnx").lower() != "keras"


def export(model, preprocessing: list, label: str) -> bytes | None:
    """``model`` behind ``preprocessing``, taking raw 0-255 float images, as ONNX bytes; ``None``
    (and one logged line) where it cannot be exported, so that the caller keeps to Keras."""
    try:
        import tf2onnx
    except ImportError:
        log.warning(f"{label}: tf2onnx is not installed, so CNN queries will start TensorFlow (pip install tf2onnx onnx)")
        return None
    tf, keras = runtime.tensorflow(), runtime.keras()
    from tensorflow.python.framework.convert_to_constants import convert_variables_to_constants_v2
    shape = tuple(model.input_shape[1:])
    inputs = keras.Input(shape, name="image")
    x = inputs
    for layer in preprocessing:
        x = layer(x)
    wrapped = keras.Model(inputs, model(x))
    spec = tf.TensorSpec([None, *shape], tf.float32, name="image")
    forward = tf.function(lambda images: wrapped(images, training=False), input_signature=[spec]).get_concrete_function()
    try:
        with warnings.catch_warnings(), runtime.native_stderr_silenced():
            warnings.simplefilter("ignore")
            logging.getLogger("tf2onnx").setLevel(logging.ERROR)
            # Frozen first: constants a layer captured (Normalization's mean and variance) become part of
            # the graph, where tf2onnx.convert.from_function would make them extra inputs.
            frozen = convert_variables_to_constants_v2(forward)
            proto, _ = tf2onnx.convert.from_graph_def(frozen.graph.as_graph_def(), input_names=[frozen.inputs[0].name],
                                                      output_names=[t.name for t in frozen.outputs], opset=OPSET)
    except Exception as exc:  # an op tf2onnx does not convert: Keras keeps the job
        log.warning(f"{label}: cannot be exported to ONNX ({runtime.first_line(exc)}), so its queries will start TensorFlow")
        return None
    data = proto.SerializeToString()
    runner = session(data, label)
    if runner is None:
        return None
    problem = _differs(runner, wrapped, shape)
    if problem:
        log.warning(f"{label}: its ONNX export {problem}, so its queries will start TensorFlow")
        return None
    return data


#: The largest row-relative difference an export may have from the Keras model on the probe batch.
TOLERANCE = 1e-4


def probe_batch(shape) -> np.ndarray:
    """Two seeded 0-255 images of ``shape`` (``None`` sides as 64): what an export is checked on,
    and what an index records the features of (``KerasExtractor.get_state``)."""
    return np.random.default_rng(0).uniform(0, 255, (2, *[d or 64 for d in shape])).astype(np.float32)


def difference(got: np.ndarray, expected: np.ndarray) -> float:
    """The largest row-relative difference between two feature batches (inf if shapes differ)."""
    if got.shape != expected.shape:
        return float("inf")
    scale = np.maximum(np.linalg.norm(expected, axis=1), np.finfo(np.float32).tiny)
    return float((np.linalg.norm(got - expected, axis=1) / scale).max())


def _differs(runner, model, shape) -> str | None:
    """What keeps the export from standing in for ``model`` (one image input, the same features on a
    seeded probe batch), or ``None``."""
    if len(runner.get_inputs()) != 1 or len(runner.get_outputs()) != 1:
        return f"takes {len(runner.get_inputs())} inputs, not one image"
    probe = probe_batch(shape)
    expected = np.asarray(model(probe, training=False), np.float32)
    got = run(runner, probe)
    if got.shape != expected.shape:
        return f"gives shape {got.shape}, not {expected.shape}"
    apart = difference(got, expected)
    return None if apart <= TOLERANCE else f"differs from the Keras model by {apart:.1e} (relative)"


def runtime_installed(label: str) -> bool:
    """Whether ONNX Runtime can be imported; where not, one logged line says that TensorFlow runs ``label``."""
    try:
        import onnxruntime  # noqa: F401
    except ImportError:
        log.warning(f"{label}: onnxruntime is not installed, so TensorFlow runs the network (pip install onnxruntime)")
        return False
    return True


def session(data: bytes, label: str, quiet: bool = False):
    """An ONNX Runtime session on bytes exported on this machine (never on bytes a file brought), or
    ``None`` (and, unless ``quiet``, one logged line) where the bytes do not load: the caller then runs
    the Keras model. Call ``runtime_installed`` first."""
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = options.inter_op_num_threads = 1  # cores are used by chunks (``run``)
    options.log_severity_level = 3
    try:
        return onnxruntime.InferenceSession(data, sess_options=options, providers=["CPUExecutionProvider"])
    except Exception as exc:  # damaged or foreign bytes: ONNX Runtime raises its own types
        if not quiet:
            log.warning(f"{label}: the exported network does not load ({runtime.first_line(exc)[:120]}), so TensorFlow runs it")
        return None


def input_shape(session) -> tuple[int | None, ...]:
    """``(height, width, channels)`` as exported, ``None`` where the network takes any size."""
    return tuple(d if isinstance(d, int) else None for d in session.get_inputs()[0].shape[1:])


def output_dim(session) -> int:
    return int(session.get_outputs()[0].shape[-1])


#: Images per ONNX Runtime call: small enough to share a batch of 32 among cores, large enough that
#: a call's overhead does not count (SqueezeNet on 2 cores: 3.66 ms an image in chunks of 4, 3.56 in 8,
#: 3.81 in 16).
CHUNK = 8


def threads() -> int:
    """The cores chunks run on: ``OMP_NUM_THREADS`` where set (a Ray actor's share), else the cores this
    process may run on."""
    try:
        return max(1, int(os.environ["OMP_NUM_THREADS"]))
    except (KeyError, ValueError):
        return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


@functools.cache
def _chunk_pool(size: int) -> ThreadPoolExecutor:
    return ThreadPoolExecutor(size, thread_name_prefix="visret-onnx")


def run(session, batch: np.ndarray) -> np.ndarray:
    """The session's output on ``batch``, run in chunks side by side (ONNX Runtime frees the GIL)."""
    name = session.get_inputs()[0].name

    def one(chunk: np.ndarray) -> np.ndarray:  # converted here, a chunk at a time, on the chunk's own core
        return session.run(None, {name: chunk.astype(np.float32, copy=False)})[0]

    chunks = [batch[i : i + CHUNK] for i in range(0, len(batch), CHUNK)]
    if len(chunks) == 1 or threads() == 1:
        outputs = [one(chunk) for chunk in chunks]
    else:
        outputs = list(_chunk_pool(threads()).map(one, chunks))
    return np.concatenate(outputs).astype(np.float32, copy=False)
