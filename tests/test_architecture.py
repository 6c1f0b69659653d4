"""Every rule of docs/architecture.md, checked: no import cycle between modules or between folders
(also none hidden by a function-level import); the layer rules (memadv.bat knows nothing of
executors or Slurm, memadv.analysis only reads and draws, ...); no module over 400 lines; no path
segment of the run folder, no training run's file and no report file spelled outside its owner; one
method registry; every command takes --config; no fake argparse namespace; no tracker numbers in
place of reasons. Imports are read with ``ast`` (top level and inside functions alike)."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1] / "memadv"
MAX_LINES = 400


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
    ("memadv.bat", ("memadv.executors", "memadv.experiments", "memadv.analysis", "memadv.cli")),
    ("memadv.analysis", ("memadv.executors", "memadv.experiments", "memadv.cli")),
    ("memadv.data", ("memadv.executors", "memadv.experiments", "memadv.analysis", "memadv.bat", "memadv.estimate",
                     "memadv.scores", "memadv.splits", "memadv.interop", "memadv.cli")),
    ("memadv.files", ("memadv.data", "memadv.scores", "memadv.splits", "memadv.estimate", "memadv.bat",
                      "memadv.executors", "memadv.experiments", "memadv.analysis", "memadv.interop", "memadv.cli")),
    ("memadv.scores", ("memadv.splits", "memadv.estimate", "memadv.bat", "memadv.executors", "memadv.experiments",
                       "memadv.analysis", "memadv.interop", "memadv.cli")),
    ("memadv.splits", ("memadv.estimate", "memadv.bat", "memadv.executors", "memadv.experiments", "memadv.analysis",
                       "memadv.interop", "memadv.cli")),
    ("memadv.interop", ("memadv.estimate", "memadv.bat", "memadv.executors", "memadv.experiments",
                        "memadv.analysis", "memadv.cli")),
    ("memadv.executors", ("memadv.bat", "memadv.estimate", "memadv.experiments", "memadv.analysis", "memadv.cli")),
    ("memadv.paper", ("memadv.experiments", "memadv.analysis", "memadv.executors", "memadv.cli")),
])
def test_layers(package, forbidden):
    bad = {m: sorted(r for r in _reach(m) if r.startswith(forbidden))
           for m in MODULES if m == package or m.startswith(package + ".")}
    assert {m: r for m, r in bad.items() if r} == {}


def test_no_module_over_400_lines():
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


# ---- folders: no import loop between them (Slurm lives inside memadv.executors, as submitit's slurm/)

def folder_of(module: str) -> str:
    """``memadv.estimate.shards`` -> ``memadv.estimate``; a top-level module is its own node."""
    return ".".join(module.split(".")[:2])


def folder_cycles(graph: dict[str, set[str]]) -> list[tuple[str, str]]:
    """Pairs of folders (a, b), a < b, each of which imports the other, directly or through others."""
    edges: dict[str, set[str]] = {}
    for m, targets in graph.items():
        for t in targets:
            a, b = folder_of(m), folder_of(t)
            if a != b:
                edges.setdefault(a, set()).add(b)

    def reach(start: str) -> set[str]:
        seen, todo = set(), [start]
        while todo:
            for nxt in edges.get(todo.pop(), ()):
                if nxt not in seen:
                    seen.add(nxt)
                    todo.append(nxt)
        return seen

    return sorted({tuple(sorted((a, b))) for a in edges for b in reach(a) if a in reach(b) and a != b})


def test_no_folder_level_import_loop():
    assert folder_cycles(GRAPH) == []


def test_the_folder_loop_check_can_fail():
    graph = {**GRAPH, "memadv.files.atomic": GRAPH["memadv.files.atomic"] | {"memadv.estimate.shards"}}
    assert ("memadv.estimate", "memadv.files") in folder_cycles(graph)


def test_slurm_is_a_backend_inside_executors():
    assert not (ROOT / "slurm").exists()
    assert (ROOT / "executors" / "slurm" / "submit.py").is_file()


# ---- the run folder: every path segment under RUN/ is spelled by memadv.layout alone

def _layout_segments() -> tuple[set[str], set[str]]:
    """(the names of the run folder's folders and files, the prefixes of its numbered files), read
    off :class:`memadv.layout.RunLayout` itself."""
    from memadv import layout

    lay = layout.RunLayout(Path("/R"))
    paths = [getattr(lay, n) for n, v in vars(layout.RunLayout).items() if isinstance(v, property)]
    numbered = [lay.shard(7), lay.shard_checkpoint(7), lay.shard_checkpoint(7, "progress.json"),
                lay.shard_checkpoint(7, "attempt.json"), lay.full_block(7, 3), lay.shard_lock(7)]
    paths += numbered + [lay.stage_stamp("sec31")] + [p for ps in lay.stage_reports().values() for p in ps]
    names = {part for p in paths for part in p.relative_to("/R").parts}
    names |= {getattr(layout, n) for n in dir(layout) if n.endswith("_FILE")}
    prefixes = {re.match(r"\D*", p.name).group(0) for p in numbered}  # "shard-", "full-"
    return {n for n in names if "7" not in n}, prefixes


SEGMENTS, NUMBERED_PREFIXES = _layout_segments()
# A data set's own folders under --data-root (torchvision's ImageFolder / Tiny ImageNet layouts) are
# not the run folder, though one of them is also called "train".
DATA_ROOT_LAYOUTS = {"memadv.data.imagefolder": {"train"}, "memadv.data.tinyimagenet": {"train"}}


def _run_segment_literals(path: Path, allowed: set[str] = frozenset()) -> list[str]:
    """Run-folder segments that ``path`` joins onto a path itself: ``x / "scores"``,
    ``x / "estimate/spec.json"``, ``x / f"shard-{i:05d}.parquet"``, ``x.joinpath("splits")``."""
    found = []
    for n in ast.walk(ast.parse(path.read_text(), str(path))):
        operands = []
        if isinstance(n, ast.BinOp) and isinstance(n.op, ast.Div):
            operands = [n.right]
        elif isinstance(n, ast.Call) and isinstance(n.func, ast.Attribute) and n.func.attr == "joinpath":
            operands = list(n.args)
        for op in operands:
            if isinstance(op, ast.Constant) and isinstance(op.value, str):
                if any(part in SEGMENTS - set(allowed) for part in op.value.split("/")):
                    found.append(op.value)
            elif isinstance(op, ast.JoinedStr) and op.values and isinstance(op.values[0], ast.Constant):
                head = str(op.values[0].value)
                if any(head.startswith(p) for p in NUMBERED_PREFIXES):
                    found.append(head)
    return sorted(found)


def test_no_module_but_the_layout_spells_a_run_folder_path():
    """A folder renamed in memadv.layout but spelled again elsewhere would split a run in two places."""
    found = {m: lits for m, p in MODULES.items()
             if m != "memadv.layout" and (lits := _run_segment_literals(p, DATA_ROOT_LAYOUTS.get(m, set())))}
    assert found == {}


def test_the_run_folder_check_can_fail(tmp_path):
    assert {"estimate", "scores", "splits", "mem.parquet", "spec.json", "jobs", "report"} <= SEGMENTS
    p = tmp_path / "m.py"
    p.write_text('a = run / "scores" / "mem.parquet"\nb = run / "estimate/spec.json"\n'
                 'c = run / f"shard-{i:05d}.parquet"\nd = run.joinpath("splits")\ne = "scores are" + x\n')
    assert _run_segment_literals(p) == ["estimate/spec.json", "mem.parquet", "scores", "shard-", "splits"]


# ---- one method registry

def _method_tables(path: Path) -> list[int]:
    """Lines of literals (dicts by key; tuples, lists, sets by element) naming three or more methods."""
    from memadv.bat.methods import METHODS

    lines = []
    for n in ast.walk(ast.parse(path.read_text(), str(path))):
        items = n.keys if isinstance(n, ast.Dict) else n.elts if isinstance(n, (ast.Tuple, ast.List, ast.Set)) else []
        if sum(isinstance(k, ast.Constant) and k.value in METHODS for k in items) >= 3:
            lines.append(n.lineno)
    return lines


def test_one_method_registry():
    """Objective, label, run-name fields and checkpoint rule of each method live in memadv.bat.methods."""
    found = {m: lines for m, p in MODULES.items() if m != "memadv.bat.methods" and (lines := _method_tables(p))}
    assert found == {}


def test_the_method_registry_check_can_fail(tmp_path):
    p = tmp_path / "m.py"
    p.write_text('LABELS = {"pgd": "PGD-AT", "trades": "TRADES", "bat": "BAT"}\nSEC3 = ("erm", "pgd")\n')
    assert _method_tables(p) == [1]


# ---- every command takes --config, and every TOML table is one a command reads

def _commands() -> dict[str, set[str]]:
    """Every (sub)command of ``memadv`` -> its option strings."""
    import argparse

    from memadv.cli.main import build_parser

    def walk(parser: argparse.ArgumentParser, prefix: str) -> dict[str, set[str]]:
        subs = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
        if not subs:
            return {prefix: {s for a in parser._actions for s in a.option_strings}}
        out: dict[str, set[str]] = {}
        for name, child in subs[0].choices.items():
            out.update(walk(child, f"{prefix} {name}".strip()))
        return out

    return walk(build_parser(), "")


def test_every_command_takes_a_config_file():
    commands = _commands()
    assert {"estimate", "aggregate", "splits", "train", "pipeline", "status", "import-fz", "export-fz",
            "figures scores", "figures report"} <= set(commands)
    assert sorted(c for c, opts in commands.items() if "--config" not in opts) == []


def test_every_toml_table_is_read_by_a_command():
    """A table no command reads would be accepted in a file and silently ignored."""
    from memadv.analysis.figure_configs import figure_tables
    from memadv.cli.common import toml_tables

    read = set(figure_tables())  # memadv figures KIND reads figures-KIND
    for m, p in MODULES.items():
        if m.startswith("memadv.cli."):
            for call in re.findall(r"check_config_file\([^)]*\)", p.read_text()):
                read |= set(re.findall(r'"([a-z-]+)"', call))
    assert set(toml_tables()) - read == set()


def test_only_the_executor_paths_spell_an_executor_folders_files():
    """logs/, jobs.json and outcomes/ of an executor folder come from memadv.executors.paths.ExecutorPaths."""
    names = re.compile(r"(?:.*/)?(?:logs|outcomes|jobs\.json|task-)")
    found = {m: lits for m, p in MODULES.items() if m != "memadv.executors.paths" and (lits := [
        n.value for n in ast.walk(ast.parse(p.read_text())) if isinstance(n, ast.Constant)
        and isinstance(n.value, str) and names.fullmatch(n.value)])}
    assert found == {}
