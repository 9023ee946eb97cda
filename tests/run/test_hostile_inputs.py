"""Issue 31's hostile hour: inputs that ended in a traceback, a poor message or an out-of-memory
run minutes in. Each is one `negojax:` line naming what to change (exit 2), refused before the
checkpoint manager leaves anything behind; the logic is tested in-process, the command line in
one table of cases forked from test_validation's driver."""
import json
import os
import subprocess
import sys
import textwrap

import fsspec
import pytest

from negojax.data.layouts import layout_of
from negojax.environments import environment_class
from negojax.environments.base import overlong_opening
from negojax.run.config import ConfigError, load_config_file, validate_static
from shipped_configs import REPO, shipped_config
from negojax.run.lock import LOCK_FILE
from openai_server import Reply, start_server, stop_server
from test_validation import DRIVER
from trainer_runs import PROXY_VARS, free_port, one_line_error, run_main

ENV_MODULE = """
from negojax.data import Persona, Task
from negojax.environments import Environment


class Empty(Environment):
    def tasks(self, split):
        if split == "eval":
            return []
        return [Task(id="t", split=split, tier="", dilemma="Share a cake.", group="",
                     personas=(Persona("Ann", "thrift"), Persona("Bo", "comfort")))]

    def system_prompt(self, task, seat):
        return "You are " + task.personas[seat].name

    def score(self, judge, tasks, rollout, group_size):
        raise NotImplementedError


class Half(Environment):  # no score: abstract
    def tasks(self, split):
        return []

    def system_prompt(self, task, seat):
        return ""
"""


@pytest.fixture()
def user_modules(tmp_path, monkeypatch):
    """A folder on sys.path holding the user's environment modules."""
    (tmp_path / "hostile_envs.py").write_text(ENV_MODULE)
    (tmp_path / "hostile_raises.py").write_text("raise RuntimeError('no GPU quota\\nsecond line')\n")
    (tmp_path / "hostile_syntax.py").write_text("def broken(:\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    return tmp_path


@pytest.mark.parametrize("name, message", [
    ("hostile_raises:Env", "importing 'hostile_raises' raised RuntimeError: no GPU quota; fix"),
    ("hostile_syntax:Env", "importing 'hostile_syntax' raised SyntaxError: "),
    ("negojax.environments:Environment", "is abstract (it lacks score, system_prompt, tasks); "
                                         "name a concrete subclass"),
    ("hostile_envs:Half", "is abstract (it lacks score)"),
    ("hostile_envs:Missing", "module 'hostile_envs' has no attribute 'Missing'"),
])
def test_an_environment_that_cannot_be_used_is_one_line_naming_why(user_modules, name, message):
    config = shipped_config("tiny_test")
    config.env.name = name
    with pytest.raises(ConfigError) as error:
        validate_static(config)
    text = str(error.value)
    assert text.startswith("config.env.name: ") and message in text and "\n" not in text


def test_an_environment_without_eval_tasks_is_one_line(user_modules):
    from negojax.run.build import environment
    config = shipped_config("tiny_test")
    config.env.name = "hostile_envs:Empty"
    validate_static(config)  # the tasks are read when the run builds
    with pytest.raises(ConfigError, match=r"^config.env.name: hostile_envs:Empty has no eval "
                                          r"tasks; its tasks\('eval'\) must return"):
        environment(config)


def test_an_installed_entry_point_names_an_environment(tmp_path, monkeypatch):
    """A real dist-info on sys.path: importlib.metadata finds the entry point itself."""
    (tmp_path / "film_night_pkg.py").write_text(
        open(os.path.join(REPO, "tests", "fixtures", "environments", "film_night.py")).read())
    info = tmp_path / "film_night_pkg-0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: film-night-pkg\nVersion: 0\n")
    (info / "entry_points.txt").write_text(
        "[negojax.environments]\nfilm_night = film_night_pkg:FilmNight\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    cls = environment_class("film_night")
    assert cls.__module__ == "film_night_pkg" and cls.__name__ == "FilmNight"
    with pytest.raises(ValueError, match="is not one of deliberation, resource_split, .*film_night"):
        environment_class("film_nite")


def test_a_config_file_that_fails_is_one_line_naming_it(tmp_path):
    syntax = tmp_path / "syntax.py"
    syntax.write_text("def get_config(:\n")
    raises = tmp_path / "raises.py"
    raises.write_text("def get_config():\n    raise KeyError('lr')\n")
    wrong = tmp_path / "wrong.py"
    wrong.write_text("def get_config():\n    return {'lr': 1}\n")
    for path, message in ((syntax, "SyntaxError: "), (raises, "get_config() raised KeyError: 'lr'"),
                          (wrong, "get_config() returned a dict; return a ConfigDict")):
        with pytest.raises(ConfigError) as error:
            load_config_file(str(path))
        assert str(error.value).startswith(f"--config={path}: ") and message in str(error.value)


def test_an_empty_data_folder_names_both_layouts(tmp_path):
    config = shipped_config("tiny_test")
    config.data.dir = str(tmp_path)
    with pytest.raises(ConfigError, match="no task files; make it a user task directory "
                                          r"\(train.jsonl, eval.jsonl\) or a shipped"):
        validate_static(config)
    (tmp_path / "train.jsonl").write_text("")
    (tmp_path / "dilemmas.jsonl").write_text("")
    with pytest.raises(ConfigError, match="holds files of both layouts"):
        validate_static(config)


def _task(i, split, dilemma="Share a cake."):
    return {"id": f"{split}-{i}", "dilemma": dilemma,
            "personas": [{"name": "Ann", "core_value": "thrift"}, {"name": "Bo", "core_value": "ease"}]}


def _write_tasks(folder, write, dilemma="Share a cake."):
    for split in ("train", "eval"):
        write(f"{folder}/{split}.jsonl",
              "".join(json.dumps(_task(i, split, dilemma)) + "\n" for i in range(2)))


def test_a_gs_data_folder_is_read_from_the_bucket(tmp_path, monkeypatch):
    from gcs_emulator import BUCKET, gcs_emulator
    from negojax.data import load_tasks
    with gcs_emulator() as variables:
        for name, value in variables.items():
            monkeypatch.setenv(name, value)
        monkeypatch.setenv("NEGOJAX_CACHE", str(tmp_path / "cache"))
        fsspec.filesystem("gs").clear_instance_cache()
        gcs = fsspec.filesystem("gs", use_listings_cache=False)
        url = f"gs://{BUCKET}/tasks"
        _write_tasks(url, lambda path, text: gcs.pipe_file(path, text.encode()))
        assert layout_of(url).name == "user"
        tasks = load_tasks("eval", resources_dir=url)
        assert [t.id for t in tasks] == ["eval-0", "eval-1"]
        config = shipped_config("tiny_test")
        config.data.dir = url
        validate_static(config)
        gcs.rm_file(f"{BUCKET}/tasks/eval.jsonl")
        with pytest.raises(ConfigError, match=f"^config.data.dir: {url}/eval.jsonl: file not found"):
            validate_static(config)
    assert not os.path.exists("gs:")


class CharTokenizer:
    """One token per character, the chat template a few tokens around each message."""

    def apply_chat_template(self, messages, add_generation_prompt):
        return [0] * sum(len(m["content"]) + 3 for m in messages)


def test_the_first_opening_prompt_past_the_limit_is_found():
    from negojax.data import Persona, Task
    from negojax.environments import Deliberation
    personas = (Persona("Ann", "thrift"), Persona("Bo", "ease"), Persona("Cy", "the planet"))
    short = Task(id="s", split="train", tier="", dilemma="Share.", personas=personas[:2], group="")
    long = Task(id="l", split="train", tier="", dilemma="x" * 5000, personas=personas, group="")
    env, tokenizer = Deliberation(), CharTokenizer()
    assert overlong_opening(env, [short, long], tokenizer, 100_000) is None
    task, seat, tokens = overlong_opening(env, [short, long], tokenizer, 5000)
    assert task is long and seat == 0 and tokens > 5000


# (flags, exit status, what the one line says).
def _cli_cases(tmp_path, judge_url, closed_url):
    user = tmp_path / "modules"
    user.mkdir()
    (user / "hostile_raises.py").write_text("raise RuntimeError('no GPU quota')\n")
    (user / "hostile_envs.py").write_text(ENV_MODULE)
    empty = tmp_path / "empty"
    empty.mkdir()
    both = tmp_path / "both"
    both.mkdir()
    (both / "train.jsonl").write_text(json.dumps(_task(0, "train")) + "\n")
    (both / "dilemmas.jsonl").write_text("")
    bad_config = tmp_path / "bad_config.py"
    bad_config.write_text(textwrap.dedent("""
        def get_config():
            raise RuntimeError("edit me")
    """))
    syntax_config = tmp_path / "syntax_config.py"
    syntax_config.write_text("def get_config(:\n")
    locks = {}
    for name, text in (("torn", '{"host": "vm", "pi'), ("empty", "")):
        locks[name] = tmp_path / f"{name}_lock"
        locks[name].mkdir()
        (locks[name] / LOCK_FILE).write_text(text)
    run = str(tmp_path / "run")
    tiny = ("--config=configs/tiny_test.py", f"--config.workdir={run}")
    judge = ("--config.judge.kind=http", f"--config.judge.base_url={judge_url}",
             "--config.judge.model=judge", "--config.judge.max_retries=0",
             "--config.train.steps=1")
    return user, run, [
        ((*tiny, "--config.env.name=hostile_raises:Env"), 2,
         "negojax: config.env.name: importing 'hostile_raises' raised RuntimeError: no GPU quota"),
        ((*tiny, "--config.env.name=negojax.environments:Environment"), 2, "is abstract"),
        ((*tiny, "--config.env.name=negojax.environments:Missing"), 2,
         "module 'negojax.environments' has no attribute 'Missing'"),
        ((*tiny, "--config.env.name=hostile_envs:Empty"), 2, "hostile_envs:Empty has no eval tasks"),
        ((f"--config={bad_config}",), 2, f"negojax: --config={bad_config}: get_config() raised "
                                         "RuntimeError: edit me; fix the file"),
        ((f"--config={syntax_config}",), 2, f"negojax: --config={syntax_config}: SyntaxError"),
        ((*tiny, f"--config.data.dir={empty}"), 2, "no task files; make it a user task directory"),
        ((*tiny, f"--config.data.dir={both}"), 2, "holds files of both layouts"),
        ((*tiny, "--config.mode=chat", "--config.prompt=" + "word " * 10_000), 2,
         "negojax: config.prompt: a prompt of "),
        ((*tiny, f"--config.workdir={locks['torn']}"), 2, "run.lock is unreadable (empty or torn)"),
        ((*tiny, f"--config.workdir={locks['empty']}"), 2, "run.lock is unreadable (empty or torn)"),
        ((*tiny, "--config.rollout.opponent=model", "--config.rollout.opponent_model.kind=http",
          "--config.rollout.opponent_model.model=m",
          f"--config.rollout.opponent_model.base_url={closed_url}"), 2,
         f"negojax: config.rollout.opponent_model.base_url: opponent endpoint {closed_url} is "
         "unreachable"),
        ((*tiny, *judge, f"--config.workdir={tmp_path / 'judged'}"), 3,
         "negojax: stopped at step 1: the judge failed"),
    ]


def test_hostile_command_lines_are_one_line_and_leave_no_empty_folder(tmp_path, monkeypatch):
    """The table of issue 31's command lines: each ends in one `negojax:` line with its exit
    status and no traceback, against real files and real servers on 127.0.0.1 (a judge that
    answers without a number, an opponent port nobody listens on); a refused start leaves no
    folder it made."""
    for name in PROXY_VARS:
        monkeypatch.delenv(name, raising=False)
    server = start_server(lambda index, body: Reply("I would rather not say."))
    user, run, cases = _cli_cases(tmp_path, server.url, f"http://127.0.0.1:{free_port()}/v1")
    env = {**os.environ, "JAX_PLATFORMS": "cpu", "PYTHONPATH": os.pathsep.join(
        [str(user), os.environ.get("PYTHONPATH", "")])}
    try:
        proc = subprocess.run([sys.executable, "-c", DRIVER], cwd=REPO, env=env,
                              input=json.dumps([list(flags) for flags, _, _ in cases]),
                              capture_output=True, text=True, timeout=900)
    finally:
        stop_server(server)
    assert proc.returncode == 0, proc.stderr[-3000:]
    problems = []
    for (flags, expected_status, expected), (status, stderr) in zip(cases, json.loads(proc.stdout)):
        lines = stderr.strip().splitlines()
        if status != expected_status or "Traceback" in stderr or not lines \
                or expected not in lines[-1] or (status == 2 and len(lines) != 1):
            problems.append(f"{flags[-1][:80]}: exit {status}: {stderr.strip()[-400:]}")
    print(f"{len(cases)} hostile command lines tried, {len(cases) - len(problems)} as promised")
    assert not problems, "\n".join(problems)
    assert not os.path.exists(run)  # every refusal there came before anything was written


def test_a_task_longer_than_the_context_is_refused_after_the_model_loads_leaving_no_trace(tmp_path):
    """Counted with the model's tokenizer, so after the checkpoint manager started: a process of
    its own, as the orbax errors it once printed came at the interpreter's exit."""
    long = tmp_path / "long"
    long.mkdir()
    _write_tasks(long, lambda path, text: (long / os.path.basename(path)).write_text(text),
                 dilemma="word " * 10_000)
    line = one_line_error(run_main("tiny_test", tmp_path / "run", f"--config.data.dir={long}",
                                   status=2))
    assert line.startswith(f"negojax: config.data.dir: {long}/train.jsonl: task 'train-0' prompts "
                           "seat 0 with 10146 tokens, which with rollout.max_new_tokens=8 exceed "
                           "the model's context of 8192 positions; shorten its dilemma"), line
    assert not os.path.exists(tmp_path / "run" / "checkpoints")
