"""Layering of memadv (docs/architecture.md): no import cycle, also none hidden by a function-level
import; memadv.bat knows nothing of executors or Slurm; memadv.analysis only reads and draws; no
module over 520 lines. Imports are read with ``ast`` (top level and inside functions alike)."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1] / "memadv"
MAX_LINES = 520


def _modules() -> dict[str, Path]:
    out = {}
    for path in sorted(ROOT.rglob("*.py")):
        parts = list(path.relative_to(ROOT.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = path
    return out


MODULES = _modules()


def _target(name: str) -> str | None:
    """The memadv module that importing ``name`` executes last (its longest known prefix)."""
    parts = name.split(".")
    while parts:
        cand = ".".join(parts)
        if cand in MODULES:
            return cand
        parts.pop()
    return None


def import_graph() -> dict[str, set[str]]:
    """module -> the memadv modules it imports anywhere in its body."""
    graph: dict[str, set[str]] = {}
    for mod, path in MODULES.items():
        edges: set[str] = set()
        package = mod if path.name == "__init__.py" else mod.rpartition(".")[0]
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    anchor = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                    base = ".".join(anchor + ([base] if base else []))
                names = [f"{base}.{a.name}" for a in node.names] + [base]
            else:
                continue
            for n in names:
                t = _target(n)
                if t is not None and t != mod:
                    edges.add(t)
        graph[mod] = edges
    return graph


GRAPH = import_graph()


def _reach(start: str) -> set[str]:
    seen, todo = set(), [start]
    while todo:
        for nxt in GRAPH[todo.pop()]:
            if nxt not in seen:
                seen.add(nxt)
                todo.append(nxt)
    return seen


def _cycles() -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in sorted(GRAPH[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(GRAPH):
        if v not in index:
            visit(v)
    return out


def test_the_walker_sees_function_level_imports():
    # memadv.cli.train imports memadv.experiments.sweep only inside a function
    assert "memadv.experiments.sweep" in GRAPH["memadv.cli.train"]
    assert "memadv.bat.train" in GRAPH["memadv.experiments.sweep"]


def test_no_import_cycle():
    assert _cycles() == []


def test_cycle_detection_can_fail(monkeypatch):
    monkeypatch.setitem(GRAPH, "memadv.errors", GRAPH["memadv.errors"] | {"memadv.bat.train"})
    assert any("memadv.errors" in c and "memadv.bat.train" in c for c in _cycles())


@pytest.mark.parametrize("package,forbidden", [
    ("memadv.bat", ("memadv.slurm", "memadv.executors", "memadv.experiments", "memadv.analysis", "memadv.cli")),
    ("memadv.analysis", ("memadv.slurm", "memadv.executors", "memadv.experiments", "memadv.cli")),
    ("memadv.data", ("memadv.slurm", "memadv.executors", "memadv.experiments", "memadv.analysis", "memadv.bat")),
    ("memadv.executors", ("memadv.bat", "memadv.estimate", "memadv.experiments", "memadv.analysis", "memadv.cli")),
])
def test_layers(package, forbidden):
    bad = {m: sorted(r for r in _reach(m) if r.startswith(forbidden))
           for m in MODULES if m == package or m.startswith(package + ".")}
    assert {m: r for m, r in bad.items() if r} == {}


def test_no_module_over_520_lines():
    long = {m: n for m, p in MODULES.items() if (n := len(p.read_text().splitlines())) > MAX_LINES}
    assert long == {}


# a training run's own files: only its writer (bat/train.py) and its reader (bat/runs.py) name them
RUN_FILE = re.compile(r"(?:.*/)?(?:config\.json|metrics\.parquet|final\.parquet|(?:last|best_\w+)\.pt)")
RUN_FILE_OWNERS = {"memadv.bat.runs", "memadv.bat.train", "memadv.bat.selection"}


def _run_file_literals(path: Path) -> list[str]:
    """String constants of ``path`` that are a training run's file name or a path/glob ending in one
    (docstrings and messages hold more text around the name and do not match)."""
    return [n.value for n in ast.walk(ast.parse(path.read_text(), str(path)))
            if isinstance(n, ast.Constant) and isinstance(n.value, str) and RUN_FILE.fullmatch(n.value)]


def test_only_the_training_run_reader_opens_a_runs_files():
    found = {m: lits for m, p in MODULES.items() if m not in RUN_FILE_OWNERS and (lits := _run_file_literals(p))}
    assert found == {}


def test_the_run_file_check_can_fail(tmp_path):
    p = tmp_path / "m.py"
    p.write_text('"""Reads metrics.parquet."""\nx = base.glob("*/config.json")\ny = d / "final.parquet"\n'
                 'z = f"{d} has no metrics.parquet"\n')
    assert _run_file_literals(p) == ["*/config.json", "final.parquet"]


def test_no_fake_argparse_namespace():
    """Figure functions take typed arguments; only the CLI builds argparse namespaces (by parsing)."""
    fake = {m for m, p in MODULES.items() if "Namespace(" in p.read_text()}
    assert fake == set()


# a comment or docstring says why, not which tracker entry asked for it ("issue 18 item 7", "issue-11")
TRACKER_REF = re.compile(r"\bissue[ -]?\d+", re.IGNORECASE)


def _tracker_refs(text: str) -> list[str]:
    return TRACKER_REF.findall(text)


def test_no_comment_cites_a_tracker_number_instead_of_the_reason():
    found = {m: refs for m, p in MODULES.items() if (refs := _tracker_refs(p.read_text()))}
    assert found == {}


def test_the_tracker_reference_check_can_fail():
    assert _tracker_refs("# bounded wait (issue 18, item 5)\n'''the issue-11 measurement'''\nissues = 3") == \
        ["issue 18", "issue-11"]


def _report_file_literals(path: Path) -> list[str]:
    """String constants of ``path`` that spell a report file the pipeline looks for: a stem of
    ``layout.REPORT_STEMS`` with an extension, or a figure's stem alone (a table's bare stem, like
    "sec31", is also a stage's name)."""
    from memadv.layout import REPORT_STEMS
    alone = [s for s in REPORT_STEMS if s.startswith(("fig", "mem_"))]
    names = re.compile(r"(?:.*/)?(?:(?:%s)\.\w+|%s)" % ("|".join(map(re.escape, REPORT_STEMS)),
                                                      "|".join(map(re.escape, alone))))
    return [n.value for n in ast.walk(ast.parse(path.read_text(), str(path)))
            if isinstance(n, ast.Constant) and isinstance(n.value, str) and names.fullmatch(n.value)]


def test_report_file_names_are_spelled_only_by_the_layout():
    """A figure renamed in its writer but not in the pipeline's up-to-date check would re-run its
    stage forever: both take the stem from memadv.layout."""
    found = {m: lits for m, p in MODULES.items() if m != "memadv.layout" and (lits := _report_file_literals(p))}
    assert found == {}


def test_the_report_file_check_can_fail(tmp_path):
    p = tmp_path / "m.py"
    p.write_text('"""Draws fig4_curves.png."""\na = out / "fig4_curves.png"\nb = "table2.md"\nc = "table22.csv"\n'
                 'd = "fig5_ablation"\ne = "sec31"\n')
    assert sorted(_report_file_literals(p)) == ["fig4_curves.png", "fig5_ablation", "table2.md"]
