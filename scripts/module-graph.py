#!/usr/bin/env python3
"""The crate's dependency graph between its top-level modules, and its cycles.

Reads every `src/**/*.rs`, finds the top-level module each file belongs to (`src/http/*.rs`
-> `http`, `src/config.rs` -> `config`), and collects the modules each one names through
`crate::<module>` or `super::` paths that leave it. Prints the edges, then every cycle
(strongly connected component of more than one module); exits 1 if there is any.

Usage: python3 scripts/module-graph.py [--dot]   (--dot prints Graphviz instead)
"""

import re
import sys
from pathlib import Path

SRC = Path(__file__).resolve().parent.parent / "src"
CRATE_PATH = re.compile(r"\bcrate::([a-z_][a-z0-9_]*)")
# Lines that are comments or doc comments do not import anything.
COMMENT = re.compile(r"^\s*//")


def module_of(path: Path) -> str:
    rel = path.relative_to(SRC)
    if len(rel.parts) == 1:
        return rel.stem
    return rel.parts[0]


def edges() -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {}
    for path in sorted(SRC.rglob("*.rs")):
        module = module_of(path)
        if module in ("lib", "main"):
            continue
        targets = graph.setdefault(module, set())
        in_tests = False
        for line in path.read_text().splitlines():
            if line.startswith("#[cfg(test)]"):
                in_tests = True  # unit tests may reach anywhere
            if in_tests or COMMENT.match(line):
                continue
            for target in CRATE_PATH.findall(line):
                if target != module:
                    targets.add(target)
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Tarjan's strongly connected components with more than one member."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def main() -> int:
    graph = edges()
    if "--dot" in sys.argv[1:]:
        print("digraph modules {")
        for source in sorted(graph):
            for target in sorted(graph[source]):
                print(f'  "{source}" -> "{target}";')
        print("}")
        return 0
    for source in sorted(graph):
        print(f"{source} -> {', '.join(sorted(graph[source])) or '(nothing)'}")
    found = cycles(graph)
    for component in found:
        print(f"cycle: {' <-> '.join(component)}")
    print(f"{len(found)} cycle(s) between top-level modules")
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())
