"""The layout is the architecture: the core imports only torch, integrations never import each other."""

import ast
import pathlib
import subprocess
import sys

import pytest

PACKAGE = pathlib.Path(__file__).resolve().parents[1] / "spacl_hf"
INTEGRATION_LIBRARIES = ("transformers", "sentence_transformers", "accelerate", "mteb", "datasets", "evaluate")
STANDARD_LIBRARY = set(sys.stdlib_module_names)


def imported_modules(path: pathlib.Path) -> list[tuple[str, int]]:
    """Absolute top-level module names (and relative imports as '.name') imported anywhere in a file."""
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found += [(alias.name, 0) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            found.append((node.module or "", node.level))
    return found


def test_core_imports_only_torch_and_the_standard_library():
    offenders = []
    for path in (PACKAGE / "core").rglob("*.py"):
        for module, level in imported_modules(path):
            top = module.split(".")[0]
            if level > 1:  # `from ..x import` leaves the core
                offenders.append(f"{path.name}: from {'.' * level}{module}")
            elif level == 0 and top not in STANDARD_LIBRARY and top != "torch" and top != "__future__":
                offenders.append(f"{path.name}: {module}")
    assert not offenders, offenders


SHARED = ("core", "common")  # the math, and standard-library helpers every integration may use


def integration_modules() -> list[pathlib.Path]:
    return [p for p in PACKAGE.glob("*.py") if p.name not in ("__init__.py",)] + [
        p for p in PACKAGE.iterdir() if p.is_dir() and p.name not in (*SHARED, "__pycache__")
    ]


def test_common_helpers_import_no_third_party_library_nor_an_integration():
    offenders = []
    for path in (PACKAGE / "common").rglob("*.py"):
        for module, level in imported_modules(path):
            top = module.split(".")[0]
            if level == 0 and top not in STANDARD_LIBRARY and top not in ("torch", "__future__"):
                if not (top == "spacl_hf" and module.split(".")[1:2] in (["core"], ["common"])):
                    offenders.append(f"{path.name}: {module}")
            if level == 2 and top not in SHARED:
                offenders.append(f"{path.name}: from ..{module}")
    assert not offenders, offenders


def test_integrations_do_not_import_each_other():
    names = {p.stem for p in integration_modules()}
    offenders = []
    for module_path in integration_modules():
        files = [module_path] if module_path.is_file() else list(module_path.rglob("*.py"))
        for path in files:
            for module, level in imported_modules(path):
                parts = module.split(".")
                if level == 0 and parts[0] == "spacl_hf" and len(parts) > 1 and parts[1] in names - {module_path.stem}:
                    offenders.append(f"{path.relative_to(PACKAGE)} imports {module}")
                if level >= 1 and parts[0] in names - {module_path.stem} and (level == 1) == module_path.is_file():
                    offenders.append(f"{path.relative_to(PACKAGE)} imports .{module}")
    assert not offenders, offenders


@pytest.mark.parametrize("module", ["spacl_hf", "spacl_hf.core"])
def test_import_does_not_pull_in_integration_libraries(module):
    code = (
        f"import sys, {module}; "
        f"loaded = [m for m in {INTEGRATION_LIBRARIES!r} if m in sys.modules]; "
        "print(','.join(loaded))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "", f"importing {module} imported {result.stdout.strip()}"
