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
import struct
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from safetensors import SafetensorError

from .. import assets
from ..errors import InputError, MemtrainError
from ..io import current_umask, replace_dir

DEFAULT_MODEL = "smollm2-135m-instruct"
WEIGHT_DTYPES = ("float32", "bfloat16", "float16")  # what `load_model(dtype=...)` takes besides the default


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


def _first_line(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    text = lines[0] if lines else type(exc).__name__
    return text if len(text) <= 300 else text[:297] + "..."


def _hf_error(source: ModelSource, exc: Exception) -> MemtrainError:
    if source.is_gguf:  # the file is what is wrong, not the folder it lies in
        gguf = Path(source.name) / source.gguf_file
        detail = _first_line(exc).replace(str(gguf), "the file")
        if isinstance(exc, struct.error | EOFError):
            detail = f"it ends early, truncated or damaged ({detail})"
        return InputError(gguf, f"not a readable GGUF model: {detail}")
    return MemtrainError(f"could not load model {source.name!r}: {_first_line(exc)}")


def _load_gguf(source: ModelSource) -> tuple[Any, Any]:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    # transformers' GGUF reader fails on a damaged file in many ways (struct.error, KeyError, IndexError,
    # numpy's ValueError, ...): every failure here is a problem of the file, and is reported as one.
    try:
        tokenizer = AutoTokenizer.from_pretrained(source.name, gguf_file=source.gguf_file)
        model = AutoModelForCausalLM.from_pretrained(source.name, gguf_file=source.gguf_file)
    except MemoryError:
        raise
    except ImportError as exc:  # a missing reader, not a bad file
        gguf = Path(source.name) / source.gguf_file
        raise MemtrainError(f"cannot read {gguf}: {_first_line(exc)}") from exc
    except Exception as exc:
        raise _hf_error(source, exc) from exc
    return tokenizer, model


def materialize(model: str | os.PathLike | None) -> str:
    """A Hub id or a local safetensors folder for `model`; a GGUF file is converted once and cached."""
    source = resolve(model)
    if not source.is_gguf:
        return source.name
    folder = _converted_dir(source)
    if (folder / "memtrain-source.json").is_file():
        return str(folder)
    tokenizer, loaded = _load_gguf(source)
    # A GGUF-loaded model keeps its (de)quantizer and refuses save_pretrained; the weights are plain
    # floats now.
    loaded.hf_quantizer = None
    if hasattr(loaded.config, "quantization_config"):
        del loaded.config.quantization_config
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", dir=folder.parent))
    tmp.chmod(0o777 & ~current_umask())  # mkdtemp makes 0700; the converted model is readable like any folder
    loaded.save_pretrained(tmp)
    tokenizer.save_pretrained(tmp)
    (tmp / "memtrain-source.json").write_text(
        json.dumps({"gguf": str(Path(source.name) / source.gguf_file)}, indent=2) + "\n"
    )
    replace_dir(tmp, folder)
    return str(folder)


def check_weights(name: str | os.PathLike) -> None:
    """For a local model folder, raise InputError naming a truncated or damaged ``*.safetensors`` file (read
    from the headers only: milliseconds); a Hub id or a GGUF source is not checked here."""
    from .checkpoints import safetensors_problem

    folder = Path(name)
    if not folder.is_dir():
        return
    for weights in sorted(folder.glob("*.safetensors")):
        try:
            problem = safetensors_problem(weights)
        except OSError as exc:
            problem = f"unreadable ({exc.strerror or exc})"
        if problem:
            raise InputError(weights, f"damaged model weights: {problem}")


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


def resolve_device(device: str | None) -> str:
    """The torch device to load a model on: `device` checked against this torch build and machine (one
    clear line when it cannot work, before anything is loaded), or the default (cuda when present)."""
    import torch

    if device is None or str(device).strip() == "":
        return default_device()
    name = str(device).strip()
    try:
        parsed = torch.device(name)
    except (RuntimeError, ValueError):
        raise MemtrainError(f"--device {name!r} is not a torch device; use cpu or cuda (cuda:N)") from None
    build = f"torch {torch.__version__}"
    if parsed.type == "cuda":
        if torch.version.cuda is None and getattr(torch.version, "hip", None) is None:
            raise MemtrainError(f"{name} requested but this torch has no CUDA ({build}); use --device cpu")
        if not torch.cuda.is_available():
            raise MemtrainError(
                f"{name} requested but no CUDA device is visible ({build}, CUDA {torch.version.cuda}: check "
                "the driver and CUDA_VISIBLE_DEVICES); use --device cpu"
            )
        count = torch.cuda.device_count()
        if parsed.index is not None and parsed.index >= count:
            raise MemtrainError(
                f"{name} requested but only {count} CUDA device{'s are' if count != 1 else ' is'} visible "
                f"(cuda:0{f'..cuda:{count - 1}' if count > 1 else ''})"
            )
    elif parsed.type == "mps":
        if not torch.backends.mps.is_available():
            raise MemtrainError(f"{name} requested but MPS is not available here ({build}); use --device cpu")
    elif parsed.type != "cpu":
        backend = getattr(torch, parsed.type, None)
        available = getattr(backend, "is_available", None)
        if available is None or not available():
            raise MemtrainError(
                f"{name} requested but this torch cannot use {parsed.type} here ({build}); use cpu or cuda"
            )
    return name


def load_model(
    model: str | os.PathLike | None = None, device: str | None = None, dtype: str | None = None
) -> tuple[Any, Any]:
    """``(model, tokenizer)`` ready for generation, in eval mode on `device` (default: cuda if present,
    else cpu).

    `dtype` is a torch dtype name ("bfloat16", "float32"); default: the checkpoint's own.
    """
    from transformers import AutoModelForCausalLM

    device = resolve_device(device)  # a device that cannot work fails before anything loads
    name = materialize(model)
    check_weights(name)
    tokenizer = load_tokenizer(name)
    try:
        loaded = AutoModelForCausalLM.from_pretrained(name, dtype=dtype or "auto")
    except (OSError, ValueError, SafetensorError) as exc:
        raise _hf_error(ModelSource(name), exc) from None
    loaded.to(device)
    loaded.eval()
    return loaded, tokenizer
