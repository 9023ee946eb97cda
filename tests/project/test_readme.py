"""The README is true: its Public API block runs as shown, every name in its lower-level table
imports, its links point inside the repository, and its test command is the one CI runs."""
import importlib
import pathlib
import re
import subprocess

import numpy as np
import pytest

REPO = pathlib.Path(__file__).resolve().parents[2]
README = (REPO / "README.md").read_text(encoding="utf-8")


def _section(title: str) -> str:
    match = re.search(rf"^## {re.escape(title)}\n(.*?)(?=^## )", README, re.DOTALL | re.MULTILINE)
    assert match, f"README has no '## {title}' section"
    return match.group(1)


def public_api_block() -> str:
    (block,) = re.findall(r"```python\n(.*?)```", _section("Public API"), re.DOTALL)
    return block


def lower_level_rows() -> list[tuple[str, list[str]]]:
    rows = re.findall(r"^\| `(negojax[\w.]*)` \| (.*) \|$", _section("Public API"), re.MULTILINE)
    return [(module, re.findall(r"`([A-Za-z_][\w.]*)", cell)) for module, cell in rows]


@pytest.mark.slow
def test_public_api_block_runs_as_shown(smollm_dir, tmp_path):
    from negojax.checkpoints.default_model import default_gguf_path
    block = public_api_block()
    out_dir = tmp_path / "out_dir"
    # The block's placeholders stand for the user's files: an HF directory and a GGUF file.
    for placeholder, real in (('"/path/to/hf_dir"', repr(smollm_dir)),
                              ('"model.gguf"', repr(default_gguf_path())),
                              ('"out_dir"', repr(str(out_dir)))):
        assert placeholder in block
        block = block.replace(placeholder, real)
    namespace: dict = {}
    exec(compile(block, "README.md (Public API)", "exec"), namespace)
    model, tiny = namespace["model"], namespace["tiny"]
    ids = np.asarray(namespace["ids"])
    assert namespace["logits"].shape == (1, ids.shape[1], model.config.vocab_size)
    for name in ("hf", "gguf"):
        assert namespace[name].tokenizer is not None
        assert namespace[name].config.num_layers == model.config.num_layers
    assert tiny.tokenizer is None
    assert (out_dir / "config.json").is_file()


def test_lower_level_table_names_exist():
    rows = lower_level_rows()
    assert len(rows) >= 10, rows
    missing = []
    for module_name, names in rows:
        module = importlib.import_module(module_name)
        assert names, f"the row of {module_name} names nothing"
        for name in names:
            target = module
            for part in name.split("."):
                target = getattr(target, part, None)
            if target is None:
                missing.append(f"{module_name}.{name}")
    assert missing == []


def test_links_and_paths_stay_inside_the_repository():
    for link in re.findall(r"\]\(([^)#]+)", README):
        if not re.match(r"[a-z]+://", link):
            assert (REPO / link).exists(), f"README links to {link}, which is not in the repository"
    found = subprocess.run(["grep", "-rnE", r"\.\./shared|/work/", "README.md", "docs", "negojax",
                            "configs", "launch", "benchmarks"], cwd=REPO, capture_output=True,
                           text=True)
    assert found.returncode == 1, found.stdout  # 1: grep found nothing


def test_ci_runs_the_readme_test_command_in_a_fresh_virtualenv():
    script = (REPO / ".ci" / "run").read_text(encoding="utf-8")
    assert 'python3 -m venv "$env_root/venv"' in script and "mktemp -d" in script
    assert 'bash -c "$test_command"' in script
    (extract,) = re.findall(r"^test_command=.*$", script, re.MULTILINE)
    command = subprocess.run(["bash", "-c", f'{extract}\necho "$test_command"'], cwd=REPO,
                             capture_output=True, text=True, check=True).stdout.strip()
    tests_block = re.search(r"\*\*Install and run the tests\*\*.*?```bash\n(.*?)\n```", README,
                            re.DOTALL).group(1)
    assert command == tests_block and "python -m pytest" in command


def test_custom_environment_block_is_the_one_the_tests_train():
    """README's "Your own environment" code is tests/fixtures/environments/film_night.py, which
    tests/run/test_environment_runs.py trains through the CLI."""
    section = _section("Environments")
    block = re.findall(r"```python\n(.*?)```", section, re.DOTALL)[0]
    fixture = (REPO / "tests" / "fixtures" / "environments" / "film_night.py").read_text()
    assert block == fixture[fixture.index("import numpy"):]
    assert len(block.splitlines()) <= 40
