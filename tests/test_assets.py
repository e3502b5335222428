from memtrain import assets


def test_fetched_assets_match_their_pinned_checksums(enwiki_excerpt, smollm2_gguf, spacy_model_path):
    assert assets.sha256_file(enwiki_excerpt) == assets.ASSETS["enwiki-excerpt"].member_sha256
    assert assets.sha256_file(smollm2_gguf) == assets.ASSETS["smollm2-135m-instruct"].member_sha256
    assert (spacy_model_path / "meta.json").is_file()


def test_fetch_reuses_the_cache(enwiki_excerpt):
    before = enwiki_excerpt.stat().st_mtime_ns
    assert assets.fetch("enwiki-excerpt") == enwiki_excerpt
    assert enwiki_excerpt.stat().st_mtime_ns == before
