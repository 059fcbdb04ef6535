"""TensorFlow stays out of processes that only use handcrafted features."""

import json
import subprocess
import sys


def modules_after(code: str, env) -> dict:
    probe = code + "\nimport json, sys\nprint(json.dumps({m: m in sys.modules for m in ('tensorflow', 'keras')}))"
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.splitlines()[-1])


def test_import_visret_does_not_import_tensorflow(project_env):
    assert modules_after("import visret", project_env) == {"tensorflow": False, "keras": False}


def test_cli_query_on_a_handcrafted_index_does_not_import_tensorflow(digits_index, digits, project_env):
    image = sorted((digits / "test" / "2").iterdir())[0]
    code = (
        "import sys\nfrom visret.cli._app import main\n"
        f"sys.argv = ['visret', 'query', {str(image)!r}, '--index', {str(digits_index)!r}, '--json']\n"
        "try:\n    main()\nexcept SystemExit as exit:\n    assert not exit.code, exit.code\n"
    )
    assert modules_after(code, project_env) == {"tensorflow": False, "keras": False}


def test_a_query_imports_neither_classification_nor_evaluation_nor_duplicates(digits_index, digits, project_env):
    """What a command does not use it does not import: the package faces are lazy (visret._lazy) and the
    built-in plugins import their pipeline classes only when pipelines are asked for."""
    image = sorted((digits / "test" / "2").iterdir())[0]
    code = (
        "import sys, json\nfrom visret.cli._app import main\n"
        f"sys.argv = ['visret', 'query', {str(image)!r}, '--index', {str(digits_index)!r}, '--json']\n"
        "try:\n    main()\nexcept SystemExit as exit:\n    assert not exit.code, exit.code\n"
        "print(json.dumps(sorted(m for m in sys.modules if m.split('.')[:2] in (['visret', 'classification'], "
        "['visret', 'evaluation'], ['visret', 'duplicates']) or m in ('matplotlib', 'sklearn'))))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=project_env, timeout=120)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout.splitlines()[-1]) == []


def test_import_visret_imports_only_its_face(project_env):
    code = "import sys, json, visret\nprint(json.dumps(sorted(m for m in sys.modules if m.startswith('visret'))))"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=project_env, timeout=60)
    assert json.loads(done.stdout) == ["visret", "visret._lazy", "visret.errors", "visret.version"]


def test_a_missing_dependency_is_said_as_itself_not_as_a_missing_attribute(project_env):
    code = "import sys\nsys.modules['xxhash'] = None\nimport visret\nvisret.index.open_index"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=project_env, timeout=60)
    assert done.returncode == 1 and "ModuleNotFoundError" in done.stderr and "xxhash" in done.stderr
    assert "has no attribute" not in done.stderr


def test_help_loads_no_faiss_and_the_plugin_list_every_kind(project_env):
    """Commands that search no index never import FAISS: the built-in backend and the k-NN head import it when used;
    ``visret plugins`` still lists every kind of extension, in a process of its own."""
    listed = subprocess.run([sys.executable, "-c", "from visret.cli._app import main; main()", "plugins", "--json"],
                            capture_output=True, text=True, env=project_env, timeout=120)
    assert listed.returncode == 0, listed.stderr
    rows = {row["name"]: row for row in json.loads(listed.stdout)}
    assert rows["backends"]["backends"] == ["faiss"] and "cnn" in rows["keras"]["pipelines"] and rows["loaders"]["loaders"]
    code = ("import sys, json\nfrom visret.cli._app import main\nsys.argv = ['visret', '--help']\n"
            "try:\n    main()\nexcept SystemExit as exit:\n    assert not exit.code, exit.code\n"
            "print(json.dumps(sorted(m for m in ('faiss', 'visret.index') if m in sys.modules)))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=project_env, timeout=60)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout.splitlines()[-1]) == []
