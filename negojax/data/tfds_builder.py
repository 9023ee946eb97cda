"""The scenarios as a TensorFlow-Datasets builder, stored as array_record and read by random access.

Neither preparing nor reading imports TensorFlow: features are plain numpy/str, the writer is
array_record and reads go through `as_data_source`. The prepared copy lives under
<negojax cache>/tfds/<content hash>/, so editing a task file (or this module's layout) yields a
fresh build while unchanged data is reused. The directory read is either the shipped scenarios or a
user's own task directory (see layouts.py); both are stored with the same features.
"""
from __future__ import annotations

import contextlib
import fcntl
import hashlib
import io
import logging
import os
import pathlib

import numpy as np
import tensorflow_datasets as tfds

from negojax import storage
from negojax.data.layouts import Layout, layout_of
from negojax.data.records import PERSONA_FIELDS, SPLITS, Persona, Task
from negojax.data.scenarios import RESOURCES_DIR

# Bump when the stored layout below changes, so stale prepared copies are not reused.
# 2: a prepared copy holds the splits of its directory's layout (a user directory: train and eval),
#    and the persona features follow PERSONA_FIELDS' order, id last.
LAYOUT_VERSION = "2"


def cache_dir() -> pathlib.Path:
    """$NEGOJAX_CACHE, else $XDG_CACHE_HOME/negojax, else ~/.cache/negojax."""
    if os.environ.get("NEGOJAX_CACHE"):
        return pathlib.Path(os.environ["NEGOJAX_CACHE"])
    xdg = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return pathlib.Path(xdg) / "negojax"


def content_hash(resources_dir: str, layout: Layout) -> str:
    digest = hashlib.sha256(f"{LAYOUT_VERSION} {layout.name}".encode())
    for name in layout.files:
        path = storage.join(resources_dir, name)
        digest.update(name.encode())
        if storage.isfile(path):
            with storage.open(path, "rb") as f:
                digest.update(f.read())
        else:
            digest.update(b"<missing>")
    return digest.hexdigest()[:16]


class NegojaxScenarios(tfds.core.GeneratorBasedBuilder):
    """Dilemmas with their personas; the splits of the directory's layout."""

    VERSION = tfds.core.Version("1.1.0")
    RELEASE_NOTES = {
        "1.0.0": "The shipped scenarios: eval holds the 100 two-party conflict tasks.",
        "1.1.0": "The shipped eval split adds one held-out dilemma per 3- or 4-persona set.",
    }

    # tfds 4.9.x locates a checksums file beside the builder's source with a check that imports the
    # `importlib_resources` backport it does not install on Python >= 3.9. Nothing is downloaded here,
    # so there are no checksums to find.
    @tfds.core.utils.classproperty
    @classmethod
    def code_path(cls):
        return None

    def __init__(self, *, resources_dir: str, layout: Layout, **kwargs):
        self._resources_dir = resources_dir
        self._layout = layout
        super().__init__(**kwargs)

    def _info(self) -> tfds.core.DatasetInfo:
        text = tfds.features.Text
        persona = tfds.features.FeaturesDict({field: text() for field in PERSONA_FIELDS})
        return tfds.core.DatasetInfo(
            builder=self,
            description=__doc__,
            features=tfds.features.FeaturesDict({
                "id": text(), "split": text(), "tier": text(), "dilemma": text(), "group": text(),
                "personas": tfds.features.Sequence(persona),
            }),
            # Keep file order: index i of a split is row i of its JSONL file.
            disable_shuffling=True,
        )

    def _split_generators(self, dl_manager):
        tasks = self._layout.load(self._resources_dir)
        return {split: self._generate_examples(tasks[split]) for split in self._layout.splits}

    def _generate_examples(self, tasks):
        for index, task in enumerate(tasks):
            yield index, {
                "id": task.id, "split": task.split, "tier": task.tier, "dilemma": task.dilemma,
                "group": task.group,
                "personas": {field: [getattr(p, field) for p in task.personas] for field in PERSONA_FIELDS},
            }


def _text(value) -> str:
    return value.decode("utf-8") if isinstance(value, bytes) else str(value)


def to_task(example: dict) -> Task:
    columns = {field: [_text(v) for v in np.asarray(example["personas"][field], dtype=object).ravel()]
               for field in PERSONA_FIELDS}
    personas = tuple(Persona(**{field: columns[field][i] for field in PERSONA_FIELDS})
                     for i in range(len(columns["name"])))
    return Task(id=_text(example["id"]), split=_text(example["split"]), tier=_text(example["tier"]),
                dilemma=_text(example["dilemma"]), personas=personas, group=_text(example["group"]))


@contextlib.contextmanager
def _exclusive(lock_path: pathlib.Path):
    """Serialise preparation between processes sharing one cache (e.g. several local hosts)."""
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    with open(lock_path, "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _resources(resources_dir) -> str:
    """The directory read, as a string: a local folder or an object-store URL (negojax.storage
    reads both; pathlib would turn gs://bucket into gs:/bucket)."""
    return str(resources_dir if resources_dir is not None else RESOURCES_DIR)


def prepared_builder(resources_dir=None, data_dir=None) -> NegojaxScenarios:
    """The builder for `resources_dir` (default: shipped data; else a shipped-layout or user task
    directory, told apart by the files it holds), prepared under `data_dir` (default:
    <negojax cache>/tfds) in a subdirectory named by the content hash."""
    resources = _resources(resources_dir)
    layout = layout_of(resources)
    base = pathlib.Path(data_dir) if data_dir is not None else cache_dir() / "tfds"
    digest = content_hash(resources, layout)
    with _quiet():
        builder = NegojaxScenarios(resources_dir=resources, layout=layout,
                                   data_dir=str(base / digest), file_format="array_record")
        if not builder.is_prepared():
            with _exclusive(base / f"{digest}.lock"):
                # Validate outside tfds so a bad row surfaces as our one-line error, not inside its pipeline.
                layout.load(resources)
                if not builder.is_prepared():
                    builder.download_and_prepare()
    return builder


@contextlib.contextmanager
def _quiet():
    """TFDS's progress bars and notices about a folder not yet prepared stay off the console: a
    few seconds of preparation, and a run refused after it keeps stderr to its one line. TFDS
    prints "Downloading and preparing dataset ..." to stdout on purpose, which would break the
    run's progress bar on a first run, so stdout is held for the preparation too."""
    absl = logging.getLogger("absl")
    level = absl.level
    absl.setLevel(logging.ERROR)
    tfds.disable_progress_bar()
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            yield
    finally:
        tfds.enable_progress_bar()
        absl.setLevel(level)


class TaskSource:
    """Random access to one split's Tasks, decoded from the array_record data source."""

    def __init__(self, data_source):
        self._source = data_source

    def __len__(self) -> int:
        return len(self._source)

    def __getitem__(self, index: int) -> Task:
        if not -len(self) <= index < len(self):
            raise IndexError(index)
        return to_task(self._source[index % len(self)])


def _check_split(split: str, resources: str) -> None:
    if split not in SPLITS:
        raise ValueError(f"unknown split '{split}'; use one of {', '.join(SPLITS)}")
    layout = layout_of(resources)
    if split not in layout.splits:
        raise ValueError(f"{resources}: a {layout.noun} holds the splits {' and '.join(layout.splits)} only, "
                         f"not '{split}'; ask for one of those")


def task_source(split: str, *, resources_dir=None, data_dir=None) -> TaskSource:
    """Random access to the Tasks of `split` of `resources_dir` (see prepared_builder)."""
    _check_split(split, _resources(resources_dir))
    return TaskSource(prepared_builder(resources_dir, data_dir).as_data_source(split))


def load_tasks(split: str, *, resources_dir=None, data_dir=None) -> list[Task]:
    """All Tasks of `split` in file order, via the TFDS data source: 'train', 'eval' or 'open_ended'
    of the shipped layout, 'train' or 'eval' of a user task directory."""
    source = task_source(split, resources_dir=resources_dir, data_dir=data_dir)
    return [source[i] for i in range(len(source))]
