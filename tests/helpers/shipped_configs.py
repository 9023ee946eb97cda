"""The shipped configs (configs/<name>.py), loaded as negojax.main loads them."""
import importlib.util
import os

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def shipped_config(name: str):
    spec = importlib.util.spec_from_file_location(name, os.path.join(REPO, f"configs/{name}.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.get_config()
