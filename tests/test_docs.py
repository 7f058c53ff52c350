"""The docs a newcomer reads: every docstring example runs, and every public class and function documents its
arguments, shapes, errors and use."""

import doctest
import importlib
import importlib.util
import inspect
import pkgutil
import re
from pathlib import Path

import pytest

import spacl_hf

PACKAGE = Path(spacl_hf.__file__).parent
PUBLIC_MODULES = [
    "spacl_hf",
    "spacl_hf.core",
    "spacl_hf.sentence_transformers",
    "spacl_hf.trainer",
    "spacl_hf.mteb",
    "spacl_hf.vision",
    "spacl_hf.diagnostics",
    "spacl_hf.ood",
    "spacl_hf.captions",
]


def package_modules() -> list[str]:
    names = [info.name for info in pkgutil.walk_packages([str(PACKAGE)], prefix="spacl_hf.")]
    return ["spacl_hf", *sorted(n for n in names if not n.endswith("__main__"))]


@pytest.mark.parametrize("name", package_modules())
def test_docstring_examples_run(name, tmp_path, monkeypatch):
    monkeypatch.setenv("HF_MODULES_CACHE", str(tmp_path / "modules"))
    module = importlib.import_module(name)
    _run_doctests(module)


@pytest.mark.parametrize("path", sorted((PACKAGE / "ood" / "metrics").glob("*/*.py")), ids=lambda p: p.stem)
def test_metric_module_examples_run(path, tmp_path, monkeypatch):
    monkeypatch.setenv("HF_MODULES_CACHE", str(tmp_path / "modules"))
    spec = importlib.util.spec_from_file_location(path.stem, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert _run_doctests(module) > 0


def _run_doctests(module) -> int:
    finder = doctest.DocTestFinder()
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    attempted = 0
    for test in finder.find(module, module.__name__):
        result = runner.run(test, out=lambda text: None)
        assert result.failed == 0, f"docstring example of {test.name} fails (run pytest --doctest-modules on it)"
        attempted += result.attempted
    return attempted


def public_objects():
    seen = set()
    for module_name in PUBLIC_MODULES:
        module = importlib.import_module(module_name)
        for name in module.__all__:
            obj = getattr(module, name)
            if (inspect.isclass(obj) or inspect.isfunction(obj)) and id(obj) not in seen:
                seen.add(id(obj))
                yield pytest.param(obj, id=f"{module_name}.{name}")


def _takes_arguments(obj) -> bool:
    target = obj.__init__ if inspect.isclass(obj) else obj
    try:
        parameters = inspect.signature(target).parameters
    except (TypeError, ValueError):
        return False
    return any(p not in ("self", "args", "kwargs", "_") for p in parameters)


def _source(obj) -> str:
    try:
        return inspect.getsource(obj)
    except (OSError, TypeError):
        return ""


@pytest.mark.parametrize("obj", list(public_objects()))
def test_public_api_is_documented(obj):
    doc = inspect.getdoc(obj) or ""
    if inspect.isclass(obj) and obj.__init__ is not object.__init__:
        doc += "\n" + (inspect.getdoc(obj.__init__) or "")
    source = _source(obj)
    missing = []
    if "Example" not in doc:
        missing.append("Example")
    if _takes_arguments(obj) and not re.search(r"^\s*(Args|Attributes|Fields):", doc, re.M):
        missing.append("Args")
    if re.search(r"\braise \w+Error\b", source) and "Raises" not in doc:
        missing.append("Raises")
    if re.search(r"\bTensor\b", str(inspect.signature(obj) if callable(obj) else "")) and "Shape" not in doc:
        missing.append("Shape")
    assert not missing, f"{obj.__qualname__} lacks {missing} in its docstring"
