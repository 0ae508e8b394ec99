"""The layer table of docs/design.md (Architecture) against the imports of the package.

Every module of radsvd must be in the table, import only modules of its own layer or below,
and take no private name (``_name``, or a private module) from another package: radsvd.images,
radsvd.volumes, radsvd.data, radsvd.cli and radsvd.bench share helpers through the ground
layer's modules or through their own private modules, never each other's.  Imports inside
functions count.  The rule is read from the table itself, so editing one without the other
fails here.
"""

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "radsvd"
SUBPACKAGES = ("images", "volumes", "data", "cli", "bench")


def _layer_table() -> list[tuple[int, str]]:
    """[(layer, pattern)] from the table rows '| n. name | `mod`, `mod`; ... | ... |'."""
    text = (ROOT / "docs" / "design.md").read_text()
    rows = []
    for line in text.splitlines():
        m = re.match(r"\|\s*(\d)\.\s[^|]*\|([^|]*)\|", line)
        if m:
            for pattern in re.findall(r"`([^`]+)`", m.group(2)):
                rows.append((int(m.group(1)), pattern))
    assert rows, "docs/design.md has no layer table"
    return rows


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def _layer_of(path: Path, table) -> int | None:
    """The layer of a file: an exact entry (`images/polar.py`), a folder (`cli/`), or a
    glob (`data/*`); the most specific entry wins."""
    rel = path.relative_to(PACKAGE).as_posix()
    best = None
    for layer, pattern in table:
        if pattern.endswith("/") and rel.startswith(pattern):
            score = len(pattern)
        elif pattern.endswith("/*") and rel.startswith(pattern[:-1]):
            score = len(pattern) - 1
        elif rel == pattern:
            score = 1000
        else:
            continue
        if best is None or score > best[0]:
            best = (score, layer)
    return None if best is None else best[1]


def _imports(path: Path):
    """(module, name or None, line) for every radsvd import of a file, functions included."""
    tree = ast.parse(path.read_text(), str(path))
    package = _module_name(path).rsplit(".", 0 if path.name == "__init__.py" else 1)[0]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith("radsvd"):
                    yield alias.name, None, node.lineno
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            if module.startswith("radsvd"):
                for alias in node.names:
                    yield module, alias.name, node.lineno


def _file_of(module: str) -> Path | None:
    base = ROOT.joinpath(*module.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.exists():
            return candidate
    return None


def _package(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 2 and parts[1] in SUBPACKAGES else "radsvd"


def _files():
    return sorted(p for p in PACKAGE.rglob("*.py")
                  if p.name != "__main__.py"
                  and not (p.name == "__init__.py" and p.parent != PACKAGE))


def test_every_module_is_in_the_layer_table():
    table = _layer_table()
    missing = [p.relative_to(PACKAGE).as_posix() for p in _files() if _layer_of(p, table) is None]
    assert not missing, f"modules missing from the layer table of docs/design.md: {missing}"


def test_imports_follow_the_layers():
    table = _layer_table()
    wrong = []
    for path in _files():
        layer = _layer_of(path, table)
        for module, name, line in _imports(path):
            target = _file_of(f"{module}.{name}") if name else None
            target = target or _file_of(module)
            if target is None or target.name == "__init__.py":
                continue   # a package's lazy front door, or a name re-exported by it
            other = _layer_of(target, table)
            if other is not None and layer is not None and other > layer:
                wrong.append(f"{path.relative_to(ROOT)}:{line} (layer {layer}) imports "
                             f"{module} (layer {other})")
    assert not wrong, "imports against the layer table:\n" + "\n".join(wrong)


def _private(name: str) -> bool:
    """A leading underscore marks a private name; dunders (``__version__``) are public."""
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def test_no_private_names_across_packages():
    """A private module is shared within its package (the ground layer's with everyone);
    no module takes a private name or private module of another package."""
    wrong = []
    for path in _files():
        home = _package(_module_name(path))
        for module, name, line in _imports(path):
            target = f"{module}.{name}" if name and _file_of(f"{module}.{name}") else module
            if _package(target) in (home, "radsvd"):
                continue
            private = [p for p in target.split(".")[1:] if _private(p)]
            if private or (name and _private(name)):
                wrong.append(f"{path.relative_to(ROOT)}:{line} takes "
                             f"{module}{'.' + name if name else ''}")
    assert not wrong, "private names taken from another package:\n" + "\n".join(wrong)


def test_images_modules_share_private_helpers_through_private_modules():
    """Inside radsvd.images a private name of a public module stays in that module: shared
    helpers live in images/_radial.py, kernels in images/_kernels.py."""
    wrong = []
    for path in (PACKAGE / "images").glob("*.py"):
        for module, name, line in _imports(path):
            target = f"{module}.{name}" if name and _file_of(f"{module}.{name}") else module
            private_module = any(_private(p) for p in target.split(".")[1:])
            if name and _private(name) and target == module and not private_module:
                wrong.append(f"{path.relative_to(ROOT)}:{line} takes {module}.{name}")
    assert not wrong, "private names of public modules:\n" + "\n".join(wrong)


def test_the_images_package_has_no_import_circle():
    """basis, methods, shifts and plan import each other in one direction only."""
    graph = {}
    for path in (PACKAGE / "images").glob("*.py"):
        mod = _module_name(path)
        graph[mod] = {m if _file_of(m) else m.rsplit(".", 1)[0]
                      for m, n, _ in _imports(path) if m.startswith("radsvd.images")}
        graph[mod] |= {f"{m}.{n}" for m, n, _ in _imports(path)
                       if m == "radsvd.images" and n and _file_of(f"{m}.{n}")}

    def reach(start, seen):
        for nxt in graph.get(start, ()):
            if nxt not in seen:
                seen.add(nxt)
                reach(nxt, seen)
        return seen

    circles = [m for m in graph if m in reach(m, set())]
    assert not circles, f"import circles through {sorted(circles)}"
