"""Every third-party module that negojax/ imports is declared in setup.py, so a fresh machine has it.

A module imported at a module's top level must be in install_requires (importing negojax needs it);
one imported inside a function may instead sit in a feature extra (`wandb`), never in `test`.
"""
import ast
import importlib.metadata
import pathlib
import re
import sys

import pytest

REPO = pathlib.Path(__file__).resolve().parents[2]
PACKAGE = REPO / "negojax"
TEST_ONLY_EXTRAS = ("test",)


def _normalise(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _requirement_name(requirement: str) -> str:
    return _normalise(re.match(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)", requirement).group(1))


def declared_requirements(setup_source: str) -> tuple[set, set]:
    """(install_requires names, names in the feature extras) read from setup.py's setup() call."""
    (call,) = [node for node in ast.walk(ast.parse(setup_source))
               if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "setup"]
    keywords = {k.arg: ast.literal_eval(k.value) for k in call.keywords
                if k.arg in ("install_requires", "extras_require")}
    required = {_requirement_name(r) for r in keywords.get("install_requires", [])}
    extras = {_requirement_name(r) for name, reqs in keywords.get("extras_require", {}).items()
              if name not in TEST_ONLY_EXTRAS for r in reqs}
    return required, extras


def third_party_imports(package: pathlib.Path) -> dict[str, tuple[str, bool]]:
    """{top-level module: (first place imported, imported at some module's top level)}."""
    found: dict[str, tuple[str, bool]] = {}
    for path in sorted(package.rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        top_level = {id(node) for node in tree.body}
        for statement in tree.body:  # imports under a top-level if/try still run on import
            if isinstance(statement, (ast.If, ast.Try)):
                top_level |= {id(node) for node in ast.walk(statement)}
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0:
                names = [node.module]
            else:
                continue
            for name in names:
                module = name.split(".")[0]
                if module in sys.stdlib_module_names or module == "negojax":
                    continue
                where, eager = found.get(module, (f"{path.relative_to(package.parent)}:{node.lineno}",
                                                  False))
                found[module] = (where, eager or id(node) in top_level)
    return found


def undeclared(imports: dict, required: set, extras: set, providers: dict) -> list[str]:
    """One line per imported module that no declared requirement provides."""
    problems = []
    for module, (where, eager) in sorted(imports.items()):
        # A module not installed here is taken to come from the distribution of its own name.
        owners = {_normalise(d) for d in providers.get(module, [module])}
        if owners & required:
            continue
        if owners & extras and not eager:
            continue
        need = "install_requires" if owners & extras else "install_requires or a feature extra"
        problems.append(f"{module} (imported at {where}) is provided by "
                        f"{', '.join(sorted(owners))}, which setup.py does not list in {need}")
    return problems


@pytest.fixture(scope="module")
def setup_source():
    return (REPO / "setup.py").read_text(encoding="utf-8")


@pytest.fixture(scope="module")
def imports():
    return third_party_imports(PACKAGE)


@pytest.fixture(scope="module")
def providers():
    return importlib.metadata.packages_distributions()


def test_every_imported_module_is_declared_in_setup_py(setup_source, imports, providers):
    assert imports, "found no third-party imports under negojax/"
    assert undeclared(imports, *declared_requirements(setup_source), providers) == []


def _without(setup_source: str, requirement: str) -> str:
    """setup.py with one requirement string deleted (not an extra's name, which a colon follows)."""
    string = re.compile(rf'"{re.escape(requirement)}(?:[<>=!~;\[][^"]*)?"(?!\s*:),?\s*')
    trimmed, count = string.subn("", setup_source)
    assert count == 1, f"{requirement} is not one requirement of setup.py"
    return trimmed


@pytest.mark.parametrize("requirement, module", [("tensorboardX", "tensorboardX"),
                                                 ("orbax-checkpoint", "orbax"),
                                                 ("absl-py", "absl"),
                                                 ("wandb", "wandb")])
def test_a_missing_requirement_is_named(setup_source, imports, providers, requirement, module):
    problems = undeclared(imports, *declared_requirements(_without(setup_source, requirement)),
                          providers)
    assert [p for p in problems if p.startswith(f"{module} ")], problems


def test_every_install_requirement_that_negojax_imports_is_needed(setup_source, imports, providers):
    """Removing any one requirement that provides an imported module makes the check fail."""
    required, _ = declared_requirements(setup_source)
    provided = {_normalise(d) for module in imports for d in providers.get(module, [module])}
    for requirement in sorted(required & provided):
        original = next(m.group(1) for m in re.finditer(r'^\s*"([A-Za-z0-9._-]+)', setup_source,
                                                        re.MULTILINE)
                        if _normalise(m.group(1)) == requirement)
        trimmed = declared_requirements(_without(setup_source, original))
        assert undeclared(imports, *trimmed, providers), f"removing {original} went unnoticed"


def test_an_extra_module_imported_at_top_level_must_be_required(tmp_path, setup_source, providers):
    package = tmp_path / "negojax"
    package.mkdir()
    (package / "eager.py").write_text("import wandb\n")
    problems = undeclared(third_party_imports(package), *declared_requirements(setup_source),
                          providers)
    assert problems == ["wandb (imported at negojax/eager.py:1) is provided by wandb, which "
                        "setup.py does not list in install_requires"]
