"""The shipped configs (configs/<name>.py), loaded as negojax.main loads them."""
import glob
import os

from negojax.run.config import load_config_file

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def shipped_config(name: str):
    return load_config_file(os.path.join(REPO, f"configs/{name}.py"))


def shipped_names() -> list[str]:
    return sorted(os.path.splitext(os.path.basename(path))[0]
                  for path in glob.glob(os.path.join(REPO, "configs", "*.py")))
