"""Which mutants of the emulated charger can change what a GOOD unit does.

The mutation run judges the good unit: it runs the spec tests against the mutated emulation with
no `--sim-defect`. Code that only a known-bad unit executes (the branch of `x if defect == "name"
else y` taken for that defect, the body of `if self.defect == "name":`, the values of a
`{"defect-name": value}` table) never runs there, so a mutant inside it survives whatever the
suite does: it is equivalent for the good unit by construction. Such code is judged by the
known-bad proof instead (`rig defects`: every known-bad unit fails exactly its requirements).

Written with `ast` because no mutation library knows which branches belong to test variants.
The rule is deliberately narrow: only code guarded by an equality (or `in`) test of the defect
name against string literals; the other terms of an `and` chain that holds one (false for the good
unit whatever they are; terms before it must be free of calls, which could act); the operators
between the terms of a chain made only of such tests (false either way); and then, by name, a
function or a module constant every reference to which (anywhere under rig/) lies in such code,
e.g. a helper only the defect's branch calls. A name referenced nowhere (dispatched by a built
string) is never classified.
"""

from __future__ import annotations

import ast
from pathlib import Path

DEFECT_NAMES = ("defect", "d")  # `d` only where the module assigns `d = <...>.defect`


def _names_defect(node: ast.AST, aliases: set[str]) -> bool:
    if isinstance(node, ast.Attribute):
        return node.attr == "defect"
    return isinstance(node, ast.Name) and node.id in aliases


def _is_string_literals(node: ast.AST) -> bool:
    if isinstance(node, ast.Constant):
        return isinstance(node.value, str)
    return isinstance(node, (ast.Tuple, ast.List, ast.Set)) and all(
        isinstance(e, ast.Constant) and isinstance(e.value, str) for e in node.elts)


def is_defect_test(node: ast.AST, aliases: set[str]) -> bool:
    """`defect == "name"` or `defect in ("a", "b")`: true only for known-bad units."""
    return (isinstance(node, ast.Compare) and len(node.ops) == 1 and isinstance(node.ops[0], (ast.Eq, ast.In))
            and _names_defect(node.left, aliases) and _is_string_literals(node.comparators[0]))


def _span(node: ast.AST) -> tuple[tuple[int, int], tuple[int, int]]:
    return (node.lineno, node.col_offset), (node.end_lineno, node.end_col_offset)


def _guarded_by_defect(test: ast.AST, aliases: set[str]) -> bool:
    """Only a known-bad unit gets past `test`: a defect test, or an `and` chain holding one anywhere
    (every term must hold, so whatever the terms before it do, the body runs only for the defect)."""
    if is_defect_test(test, aliases):
        return True
    return (isinstance(test, ast.BoolOp) and isinstance(test.op, ast.And)
            and any(is_defect_test(v, aliases) for v in test.values))


def _has_call(node: ast.AST) -> bool:
    return any(isinstance(n, (ast.Call, ast.Await, ast.NamedExpr)) for n in ast.walk(node))


def _bool_op_spans(node: ast.BoolOp, aliases: set[str]) -> list:
    """`a and defect == "x" and b`: every term but the test; `defect == "x" or defect == "y"`: the operators."""
    tests = [is_defect_test(v, aliases) for v in node.values]
    if all(tests):  # false for the good unit, joined by `and` or by `or`
        return [(_span(a)[1], _span(b)[0]) for a, b in zip(node.values, node.values[1:])]
    if not isinstance(node.op, ast.And) or not any(tests):
        return []
    first = tests.index(True)
    if any(_has_call(v) for v in node.values[:first]):
        return []  # a term evaluated before the test may act: the good unit runs it
    return [_span(v) for v, t in zip(node.values, tests) if not t]


def defect_only_spans(source: str, defect_names: set[str]) -> list[tuple[tuple[int, int], tuple[int, int]]]:
    """Source spans ((line, col), (end line, end col)) that only a known-bad unit executes."""
    tree = ast.parse(source)
    aliases = {"defect"}
    for node in ast.walk(tree):
        if (isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name)
                and node.targets[0].id == "d" and _names_defect(node.value, set())):
            aliases.add("d")
    spans = []
    for node in ast.walk(tree):
        if isinstance(node, ast.IfExp) and _guarded_by_defect(node.test, aliases):
            spans.append(_span(node.body))
        elif isinstance(node, ast.If) and _guarded_by_defect(node.test, aliases):
            spans.extend(_span(s) for s in node.body)
        if isinstance(node, ast.BoolOp):
            spans.extend(_bool_op_spans(node, aliases))
        if isinstance(node, ast.Dict) and node.keys and all(
                isinstance(k, ast.Constant) and k.value in defect_names for k in node.keys):
            spans.extend(_span(v) for v in node.values)
    return spans


def inside(spans, line: int, col: int) -> bool:
    return any(start <= (line, col) < end for start, end in spans)


def known_defects(project: Path) -> set[str]:
    import sys

    sys.path.insert(0, str(project))
    try:
        from rig.sim.defects import CATALOGUE
    finally:
        sys.path.pop(0)
    return set(CATALOGUE)


def _references(tree: ast.AST) -> list[tuple[str, tuple[int, int]]]:
    refs = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Name):
            refs.append((node.id, (node.lineno, node.col_offset)))
        elif isinstance(node, ast.Attribute):
            refs.append((node.attr, (node.end_lineno, node.end_col_offset - len(node.attr))))
    return refs


class _Named:
    """A module-level `NAME = value` seen like a function: a name and a span."""

    def __init__(self, node: ast.Assign):
        self.name = node.targets[0].id
        for attr in ("lineno", "col_offset", "end_lineno", "end_col_offset"):
            setattr(self, attr, getattr(node, attr))


def defect_only_by_file(targets: dict[str, str], package: Path, defect_names: set[str]) -> dict[str, list]:
    """Spans per target file: the guarded code above, plus whole functions reached only from it."""
    sources = {str(f.relative_to(package)): f.read_text() for f in package.rglob("*.py")}
    keys = {t: next(k for k in sources if k.endswith("sim/" + t)) for t in targets}
    sources.update({keys[t]: src for t, src in targets.items()})
    trees = {k: ast.parse(src) for k, src in sources.items()}
    spans = {k: defect_only_spans(src, defect_names) for k, src in sources.items()}
    refs = {k: _references(tree) for k, tree in trees.items()}
    functions = [(k, node) for k in keys.values() for node in ast.walk(trees[k])
                 if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))]
    functions += [(k, _Named(node)) for k in keys.values() for node in trees[k].body  # module constants
                  if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name)]
    found: set[int] = set()
    changed = True
    while changed:  # a helper of a defect-only helper is defect-only too
        changed = False
        for k, fn in functions:
            if id(fn) in found:
                continue
            own = _span(fn)
            uses = [(f, at) for f, rs in refs.items() for name, at in rs
                    if name == fn.name and not (f == k and own[0] <= at < own[1])]
            if uses and all(inside(spans[f], *at) for f, at in uses):
                found.add(id(fn))
                spans[k].append(own)
                changed = True
    return {t: spans[keys[t]] for t in targets}
