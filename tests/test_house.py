"""House rules on the package's shape: no source module over 400 lines, no function over 60."""

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src"
MAX_MODULE_LINES = 400
MAX_FUNCTION_LINES = 60  # from the ``def`` line to the function's last line (decorators aside)


def too_long(path: Path, root: Path) -> list[str]:
    """What in the module at ``path`` breaks the rules, each named by its path under ``root`` (and line)."""
    text = path.read_text(encoding="utf-8")
    name = path.relative_to(root)
    found = []
    if (lines := len(text.splitlines())) > MAX_MODULE_LINES:
        found.append(f"{name}: {lines} lines (most {MAX_MODULE_LINES})")
    for node in ast.walk(ast.parse(text, filename=str(path))):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            length = node.end_lineno - node.lineno + 1
            if length > MAX_FUNCTION_LINES:
                found.append(f"{name}:{node.lineno} {node.name}: {length} lines (most {MAX_FUNCTION_LINES})")
    return found


def test_no_module_over_400_lines_and_no_function_over_60():
    modules = sorted(SRC.rglob("*.py"))
    assert len(modules) > 40  # the walk found the package, not an empty folder
    found = [problem for path in modules for problem in too_long(path, SRC)]
    assert not found, "split these along their ideas:\n" + "\n".join(found)


def test_the_rules_catch_a_long_function_nested_or_not_and_a_long_module(tmp_path):
    body = "\n".join(f"    x{i} = {i}" for i in range(60))
    (tmp_path / "fits.py").write_text(f"def f():\n{body[: body.rindex(chr(10))]}\n")  # 60 lines with its def
    (tmp_path / "long_function.py").write_text(f"@decorated\ndef f():\n{body}\n")  # 61 lines, the decorator aside
    nested = "\n".join("    " + line for line in f"def g():\n{body}".splitlines())
    (tmp_path / "nested.py").write_text(f"def outer():\n{nested}\n")  # inner g: 61 lines, outer: 62
    (tmp_path / "long_module.py").write_text("\n".join(f"y{i} = {i}" for i in range(401)) + "\n")
    assert too_long(tmp_path / "fits.py", tmp_path) == []
    assert too_long(tmp_path / "long_function.py", tmp_path) == ["long_function.py:2 f: 61 lines (most 60)"]
    assert too_long(tmp_path / "nested.py", tmp_path) == ["nested.py:1 outer: 62 lines (most 60)",
                                                           "nested.py:2 g: 61 lines (most 60)"]
    assert too_long(tmp_path / "long_module.py", tmp_path) == ["long_module.py: 401 lines (most 400)"]
