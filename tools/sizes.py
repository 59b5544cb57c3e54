"""Sizes of the library's modules, classes and functions, docstrings not counted.

``python -m tools.sizes [--all] [paths...]`` (default ``samplers``) prints every module, class
and function over its limit (450, 200 and 60 lines), or with ``--all`` every module and the
largest classes and functions; it exits 1 when something is over. A size is the span of
source lines from the ``def`` / ``class`` line (or the module's first line) to its last line,
less the lines of every docstring inside it.
"""
from __future__ import annotations

import argparse
import ast
import pathlib
import sys

LIMITS = {'module': 450, 'class': 200, 'function': 60}


def _docstring_lines(tree):
    """The line numbers covered by docstrings anywhere in ``tree``."""
    lines = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            body = node.body
            if body and isinstance(body[0], ast.Expr) and isinstance(
                    getattr(body[0], 'value', None), ast.Constant) and isinstance(
                    body[0].value.value, str):
                lines.update(range(body[0].lineno, body[0].end_lineno + 1))
    return lines


def sizes(path):
    """``(kind, name, size)`` for the module at ``path`` and every class and function in it."""
    source = pathlib.Path(path).read_text()
    tree = ast.parse(source)
    docs = _docstring_lines(tree)

    def span(first, last):
        return sum(1 for n in range(first, last + 1) if n not in docs)

    out = [('module', str(path), span(1, len(source.splitlines())))]
    for node in ast.walk(tree):
        if isinstance(node, ast.ClassDef):
            kind = 'class'
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            kind = 'function'
        else:
            continue
        first = min([node.lineno] + [d.lineno for d in node.decorator_list])
        out.append((kind, '{}:{} {}'.format(path, node.lineno, node.name),
                    span(first, node.end_lineno)))
    return out


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('paths', nargs='*', default=['samplers'])
    parser.add_argument('--all', action='store_true', help='list every module, and the 5 '
                        'largest classes and functions')
    args = parser.parse_args(argv)
    rows = []
    for root in args.paths:
        root = pathlib.Path(root)
        for path in sorted(root.rglob('*.py')) if root.is_dir() else [root]:
            rows.extend(sizes(path))
    over = [r for r in rows if r[2] > LIMITS[r[0]]]
    if args.all:
        for kind in ('module', 'class', 'function'):
            mine = sorted((r for r in rows if r[0] == kind), key=lambda r: -r[2])
            for r in mine if kind == 'module' else mine[:5]:
                print('{:8} {:5d}  {}'.format(kind, r[2], r[1]))
    print('over the limits (module {module}, class {class}, function {function}):'.format(
        **LIMITS), 'none' if not over else '')
    for r in over:
        print('{:8} {:5d}  {}'.format(r[0], r[2], r[1]))
    return 1 if over else 0


if __name__ == '__main__':
    sys.exit(main())
