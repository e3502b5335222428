"""Load the agent's tokenizer and model from an asset name, a Hub id, a local folder or a GGUF file.

``None`` means the embedded default, asset ``smollm2-135m-instruct`` (SmolLM2-135M-Instruct, GGUF). Loading a
GGUF file de-quantizes it (about 12 s for SmolLM2); the first load therefore saves the converted model and
tokenizer as a plain safetensors folder under ``memtrain.assets.cache_dir()/models/`` and later loads read
that folder (well under a second), with identical weights. :func:`materialize` returns such a folder for any
source, which is also what vLLM needs.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .. import assets
from ..errors import InputError, MemtrainError
from ..io import replace_dir

DEFAULT_MODEL = "smollm2-135m-instruct"


@dataclass(frozen=True, slots=True)
class ModelSource:
    """Where weights come from: a Hub id or local folder (`name`), plus a GGUF file name inside it."""

    name: str
    gguf_file: str | None = None

    @property
    def is_gguf(self) -> bool:
        return self.gguf_file is not None


def _could_be_hub_id(name: str) -> bool:
    """``org/name`` or a bare legacy name such as ``gpt2``; never a relative/absolute path or a .gguf file."""
    return not name.startswith((".", "/", "~")) and name.count("/") <= 1 and not name.endswith(".gguf")


def resolve(model: str | os.PathLike | None) -> ModelSource:
    """Turn what a user typed into a :class:`ModelSource` (checking local paths exist)."""
    name = str(model) if model is not None else DEFAULT_MODEL
    if name in assets.ASSETS:
        path = assets.fetch(name)
        if path.suffix != ".gguf":
            raise MemtrainError(f"asset {name!r} is not a model")
        return ModelSource(str(path.parent), path.name)
    path = Path(name).expanduser()
    if path.is_file():
        if path.suffix != ".gguf":
            raise InputError(path, "a model file must be a .gguf file (or give the model's folder)")
        return ModelSource(str(path.parent), path.name)
    if path.is_dir():
        ggufs = sorted(path.glob("*.gguf"))
        if not (path / "config.json").is_file() and len(ggufs) == 1:
            return ModelSource(str(path), ggufs[0].name)
        if not (path / "config.json").is_file():
            raise InputError(path, "not a model folder (no config.json, and not exactly one .gguf file)")
        return ModelSource(str(path))
    if not _could_be_hub_id(name):
        raise InputError(
            name, f"no such model file or folder (use a local path, a Hub id, or asset {DEFAULT_MODEL!r})"
        )
    return ModelSource(
        name
    )  # a Hub id: transformers finds it in the local HF cache (or downloads when online)


def _converted_dir(source: ModelSource) -> Path:
    gguf = Path(source.name) / source.gguf_file
    stat = gguf.stat()
    key = hashlib.sha1(f"{gguf.resolve()}|{stat.st_size}|{stat.st_mtime_ns}".encode()).hexdigest()[:12]
    return assets.cache_dir() / "models" / f"{gguf.stem}-{key}"


def _hf_error(source: ModelSource, exc: Exception) -> MemtrainError:
    return MemtrainError(f"could not load model {source.name!r}: {str(exc).splitlines()[0]}")


def _load_gguf(source: ModelSource) -> tuple[Any, Any]:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(source.name, gguf_file=source.gguf_file)
    model = AutoModelForCausalLM.from_pretrained(source.name, gguf_file=source.gguf_file)
    return tokenizer, model


def materialize(model: str | os.PathLike | None) -> str:
    """A Hub id or a local safetensors folder for `model`; a GGUF file is converted once and cached."""
    source = resolve(model)
    if not source.is_gguf:
        return source.name
    folder = _converted_dir(source)
    if (folder / "memtrain-source.json").is_file():
        return str(folder)
    try:
        tokenizer, loaded = _load_gguf(source)
    except (OSError, ValueError) as exc:
        raise _hf_error(source, exc) from None
    # A GGUF-loaded model keeps its (de)quantizer and refuses save_pretrained; the weights are plain
    # floats now.
    loaded.hf_quantizer = None
    if hasattr(loaded.config, "quantization_config"):
        del loaded.config.quantization_config
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", dir=folder.parent))
    loaded.save_pretrained(tmp)
    tokenizer.save_pretrained(tmp)
    (tmp / "memtrain-source.json").write_text(
        json.dumps({"gguf": str(Path(source.name) / source.gguf_file)}, indent=2) + "\n"
    )
    replace_dir(tmp, folder)
    return str(folder)


def load_tokenizer(model: str | os.PathLike | None = None) -> Any:
    """The model's tokenizer (from the converted folder when the model is a GGUF file)."""
    from transformers import AutoTokenizer

    name = materialize(model)
    try:
        return AutoTokenizer.from_pretrained(name)
    except (OSError, ValueError) as exc:
        raise _hf_error(ModelSource(name), exc) from None


def default_device() -> str:
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def load_model(
    model: str | os.PathLike | None = None, device: str | None = None, dtype: str | None = None
) -> tuple[Any, Any]:
    """``(model, tokenizer)`` ready for generation, in eval mode on `device` (default: cuda if present,
    else cpu).

    `dtype` is a torch dtype name ("bfloat16", "float32"); default: the checkpoint's own.
    """
    from transformers import AutoModelForCausalLM

    name = materialize(model)
    tokenizer = load_tokenizer(name)
    try:
        loaded = AutoModelForCausalLM.from_pretrained(name, dtype=dtype or "auto")
    except (OSError, ValueError) as exc:
        raise _hf_error(ModelSource(name), exc) from None
    loaded.to(device or default_device())
    loaded.eval()
    return loaded, tokenizer
