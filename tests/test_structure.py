"""The package's shape, as STYLE.md asks: modules import in one direction only, and no definition runs long."""

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "rnnmt"
MODULES = sorted(PACKAGE.glob("*.py"))


def imported_modules(tree: ast.Module) -> set[str]:
    """The rnnmt modules a module imports, at any depth, except under ``if TYPE_CHECKING:`` (types only)."""
    found: set[str] = set()

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and isinstance(node.test, ast.Name) and node.test.id == "TYPE_CHECKING":
            return
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("rnnmt"):
            names = [node.module] if node.module != "rnnmt" else [f"rnnmt.{a.name}" for a in node.names]
            found.update(name.split(".")[1] for name in names if "." in name)
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(tree)
    return found & {path.stem for path in MODULES}


def cycle(graph: dict[str, set[str]]) -> list[str]:
    """A cycle of imports, if there is one (depth-first search)."""
    state: dict[str, str] = {}

    def walk(node: str, path: list[str]) -> list[str]:
        state[node] = "open"
        for nxt in sorted(graph[node]):
            if state.get(nxt) == "open":
                return path[path.index(nxt):] + [nxt] if nxt in path else [node, nxt]
            if nxt not in state and (found := walk(nxt, path + [nxt])):
                return found
        state[node] = "done"
        return []

    for start in sorted(graph):
        if start not in state and (found := walk(start, [start])):
            return found
    return []


def test_no_module_imports_one_that_imports_it_back():
    graph = {path.stem: imported_modules(ast.parse(path.read_text(encoding="utf-8"))) - {path.stem}
             for path in MODULES}
    assert graph["translator"] and graph["training"], "the walk found no imports at all"
    assert cycle(graph) == [], f"import cycle: {' -> '.join(cycle(graph))}"


def test_the_walk_finds_a_cycle_where_there_is_one():
    assert cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert cycle({"a": {"b"}, "b": set()}) == []


@pytest.mark.parametrize("path", MODULES, ids=lambda p: p.name)
def test_no_definition_runs_over_150_lines(path):
    tree = ast.parse(path.read_text(encoding="utf-8"))
    long = [(node.name, node.end_lineno - node.lineno + 1) for node in ast.walk(tree)
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))
            and node.end_lineno - node.lineno + 1 > 150]
    assert not long, f"{path.name}: {long}"
