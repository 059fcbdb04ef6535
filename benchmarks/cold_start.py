"""Cold start: a handcrafted ``visret query`` on a 10,000-entry index, a CNN one, and ``visret --help``.

Run from the repository root: ``.venv/bin/python benchmarks/cold_start.py`` (about 3 minutes on 2 cores;
reads ``../shared/datasets``). The 10,000 MNIST test digits as PNGs indexed with ``color-hist`` (flat), and
split 1's training photos of Oxford 17 Flowers indexed with the default extractor (SqueezeNet + colour, its
graph derived by that build). Then, interleaved over ``--rounds`` rounds, each in a new process timed from
outside: ``python -c "import numpy"`` (the floor every command pays), ``visret --help``, ``visret query IMAGE
-k 10 --json`` on each index. Medians and ranges are reported, with the modules the handcrafted query imported.

visret's modules are compiled to bytecode first (``compileall``), as pip compiles a wheel's at install: an
editable install leaves that to the first run, and where ``PYTHONDONTWRITEBYTECODE`` is set (this machine's
environment sets it) every run compiles the 85 modules a query imports again (``--source`` measures
that condition instead: visret's bytecode removed and none written, its dependencies' kept).
"""

from __future__ import annotations

import argparse
import compileall
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from datasets import materialise  # noqa: E402
from results import emit  # noqa: E402
from spine import write_mnist_test  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
VISRET = str(Path(sys.executable).with_name("visret"))

IMPORTED = """
import sys
from visret.cli._app import main
sys.argv = {argv!r}
try:
    main()
except SystemExit:
    pass
top = sorted({{name.split(".")[0] for name in sys.modules}})
print(json.dumps({{"visret": sorted(n for n in sys.modules if n.startswith("visret.")), "top": top}}), file=sys.stderr)
"""


def timed(argv: list[str], env: dict[str, str]) -> float:
    start = time.perf_counter()
    subprocess.run(argv, check=True, capture_output=True, env=env)
    return time.perf_counter() - start


def summary(times: list[float]) -> dict:
    return {"median_s": round(statistics.median(times), 3), "min_s": round(min(times), 3), "max_s": round(max(times), 3)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--source", action="store_true", help="no bytecode of visret's own: its modules compiled on each run")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    import visret

    env = dict(os.environ)
    for folder in ("visret", "plugins"):
        if args.source:
            env["PYTHONDONTWRITEBYTECODE"] = "1"
            for cache in (ROOT / folder).rglob("__pycache__"):
                shutil.rmtree(cache)
        else:
            compileall.compile_dir(ROOT / folder, quiet=1)
    with tempfile.TemporaryDirectory(dir=ROOT / "build") as tmp:
        work = Path(tmp)
        digits = write_mnist_test(work / "mnist")
        visret.build_index(digits, "color-hist", work / "handcrafted").close()
        photos, _ = materialise("flowers", work / "flowers")
        visret.build_index(photos, index=work / "cnn").close()
        digit = sorted((digits / "7").iterdir())[0]
        photo = sorted(sorted(photos.iterdir())[0].iterdir())[0]
        commands = {
            "python -c 'import numpy'": [sys.executable, "-c", "import numpy"],
            "visret --help": [VISRET, "--help"],
            "cold handcrafted query (color-hist, 10,000 entries)": [VISRET, "query", str(digit), "--index", str(work / "handcrafted"), "-k", "10", "--json"],
            "cold CNN query (default extractor, flowers)": [VISRET, "query", str(photo), "--index", str(work / "cnn"), "-k", "10", "--json"],
        }
        for argv in commands.values():  # page cache warm, derived graph in place
            timed(argv, env)
        times: dict[str, list[float]] = {name: [] for name in commands}
        for _ in range(args.rounds):
            for name, argv in commands.items():
                times[name].append(timed(argv, env))
        probe = subprocess.run([sys.executable, "-c", "import json\n" + IMPORTED.format(argv=commands["cold handcrafted query (color-hist, 10,000 entries)"])],
                               capture_output=True, text=True, env=env, check=True)
        imported = json.loads(probe.stderr.strip().splitlines()[-1])
    results = {name: summary(values) for name, values in times.items()}
    handcrafted = results["cold handcrafted query (color-hist, 10,000 entries)"]["median_s"]
    emit({
        "bytecode": "none of visret's (compiled each run)" if args.source else "compiled beforehand, as a wheel install",
        "rounds": args.rounds, **results,
        "cnn_over_handcrafted": round(results["cold CNN query (default extractor, flowers)"]["median_s"] / handcrafted, 2),
        "query_imports_classification_or_evaluation": any(n.startswith(("visret.classification", "visret.evaluation")) for n in imported["visret"]),
        "query_imports": [n for n in ("tensorflow", "keras", "sklearn", "skimage", "scipy", "pydantic", "onnxruntime") if n in imported["top"]],
    }, args.out)


if __name__ == "__main__":
    main()
