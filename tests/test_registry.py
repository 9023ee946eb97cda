"""negojax.registry: names resolve to built-ins, registrations, entry points and import paths;
anything else is one line naming the key."""
import pytest

from negojax.registry import Registry


def double(x):
    return 2 * x


def test_built_ins_resolve_lazily_and_registrations_and_import_paths_join_them(tmp_path, monkeypatch):
    registry = Registry("rl.thing", {"double": "test_registry:double"})
    assert registry.get("double") is double
    registry.register("triple", lambda x: 3 * x)

    @registry.register("square")
    def square(x):
        return x * x
    assert registry.get("triple")(2) == 6 and registry.get("square")(3) == 9
    assert list(registry) == ["double", "triple", "square"]
    (tmp_path / "user_things.py").write_text("def halve(x):\n    return x / 2\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    assert registry.get("user_things:halve")(4) == 2


def test_an_installed_entry_point_is_a_name(tmp_path, monkeypatch):
    (tmp_path / "pkg_things.py").write_text("def negate(x):\n    return -x\n")
    info = tmp_path / "pkg_things-0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: pkg-things\nVersion: 0\n")
    (info / "entry_points.txt").write_text("[negojax.things]\nnegate = pkg_things:negate\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    registry = Registry("rl.thing", {}, entry_points="negojax.things")
    assert registry.get("negate")(1) == -1 and "negate" in registry.names()


def _no_lambdas(name, obj):
    if getattr(obj, "__name__", "") == "<lambda>":
        raise ValueError(f"rl.thing: {name!r} is a lambda")


@pytest.mark.parametrize("name, message", [
    ("cube", "rl.thing: 'cube' is not one of double, nor an import path like"),
    (3, "rl.thing: 3 is not a name"),
    ("no_such_module_x:f", "rl.thing: cannot import 'no_such_module_x'"),
    ("test_registry:missing", "rl.thing: module 'test_registry' has no attribute 'missing'"),
    ("user_raises:f", "rl.thing: importing 'user_raises' raised RuntimeError: no quota; fix"),
    ("user_raises_not:LAMBDA", "rl.thing: 'user_raises_not:LAMBDA' is a lambda"),
])
def test_a_name_that_does_not_resolve_is_one_line_naming_the_key(tmp_path, monkeypatch, name,
                                                                   message):
    (tmp_path / "user_raises.py").write_text("raise RuntimeError('no quota\\nmore')\n")
    (tmp_path / "user_raises_not.py").write_text("LAMBDA = lambda x: x\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    registry = Registry("rl.thing", {"double": "test_registry:double"}, check=_no_lambdas)
    with pytest.raises(ValueError) as error:
        registry.get(name)
    assert str(error.value).startswith(message) and "\n" not in str(error.value)
