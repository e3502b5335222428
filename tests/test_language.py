"""Non-English sources: the dump's language and namespace table from its `<siteinfo>`, the NER model's
language, localized file and category links, UTF-16 dumps, and the text check for sources that do not say
their language. The dumps are written here: small, real-looking bgwiki/dewiki exports."""

from __future__ import annotations

import bz2
import json
import pickle
import subprocess
import sys

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from memtrain.errors import ConfigError, InputError
from memtrain.pipeline.clean import clean_pages
from memtrain.pipeline.ner import model_language
from memtrain.pipeline.read import (
    DumpPage,
    SiteInfo,
    check_language,
    declared_language,
    plan_shards,
    read_shard,
    read_siteinfo,
    same_language,
)

ROOT = '<mediawiki xmlns="http://www.mediawiki.org/xml/export-0.11/" version="0.11"{lang}>\n'
SITEINFO = """  <siteinfo>
    <sitename>Уикипедия</sitename>
    <dbname>{dbname}</dbname>
    <base>https://{host}/wiki/Начална_страница</base>
    <generator>MediaWiki 1.43.0-wmf.12</generator>
    <case>first-letter</case>
    <namespaces>
      <namespace key="-2" case="first-letter">Медия</namespace>
      <namespace key="-1" case="first-letter">Специални</namespace>
      <namespace key="0" case="first-letter" />
      <namespace key="1" case="first-letter">Беседа</namespace>
      <namespace key="4" case="first-letter">Уикипедия</namespace>
      <namespace key="6" case="first-letter">Файл</namespace>
      <namespace key="10" case="first-letter">Шаблон</namespace>
      <namespace key="14" case="first-letter">Категория</namespace>
      <namespace key="15" case="first-letter">Беседа за категория</namespace>
    </namespaces>
  </siteinfo>
"""
PAGE = """  <page>
    <title>{title}</title>
    <ns>{ns}</ns>
    <id>{id}</id>
    <revision>
      <id>{rev}</id>
      <text bytes="{size}" xml:space="preserve">{text}</text>
    </revision>
  </page>
"""
SOFIA = """[[Файл:Sofia-collage.jpg|мини|250px|Изглед към центъра на София]]
'''София''' е столицата и най-големият град на [[България]].
Градът е разположен в [[Софийска котловина|Софийската котловина]] в подножието на [[Витоша]].

== История ==
Селището е основано от траките през VIII век пр.н.е. и по-късно е наречено Сердика.
[[Картинка:Alexander Nevsky Cathedral.png|мини|ляво|Храм-паметник „Свети Александър Невски“]]

[[Категория:Столици в Европа]]
[[категория:Градове в България|София]]
[[en:Sofia]]"""
PLOVDIV = """'''Пловдив''' е вторият по големина град в [[България]].
Той е сред най-старите градове в [[Европа]].
[[Медия:Plovdiv anthem.ogg]]
[[:Категория:Градове в България|Другите градове]] също имат дълга история.
[[Category:Градове в България]] [[File:Plovdiv.jpg|thumb|Пловдив]]"""
# Bulgarian prose for the text check: the first pages of a JSONL/parquet source that says nothing.
BULGARIAN_PROSE = (
    "България е държава в Югоизточна Европа, разположена в източната част на Балканския полуостров. "
    "На север граничи с Румъния, на запад със Сърбия и Северна Македония, на юг с Гърция и Турция, а на "
    "изток бреговете ѝ се мият от Черно море. Столица и най-голям град е София, следвана от Пловдив, "
    "Варна и Бургас. Страната е член на Европейския съюз и на НАТО. Държавата е основана през седми век "
    "и е една от най-старите в Европа, като запазва името си от създаването си до днес. "
)
ENGLISH_PROSE = (
    "Bulgaria is a country in Southeast Europe. It is situated on the eastern portion of the Balkans and "
    "is bordered by Romania to the north, Serbia and North Macedonia to the west, Greece and Turkey to the "
    "south, and the Black Sea to the east. Its capital and largest city is Sofia, which is followed by "
    "Plovdiv, Varna and Burgas. The country is a member of the European Union and of NATO, and it is one "
    "of the oldest states in Europe that have kept their original name since they were founded. "
)


def page(title: str, text: str, page_id: int, ns: int = 0) -> str:
    escaped = text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    size = len(text.encode())
    return PAGE.format(title=title, ns=ns, id=page_id, rev=page_id + 100, size=size, text=escaped)


def bgwiki_xml(
    *, lang: str = ' xml:lang="bg"', dbname: str = "bgwiki", host: str = "bg.wikipedia.org"
) -> str:
    pages = (
        page("София", SOFIA, 1) + page("Пловдив", PLOVDIV, 2) + page("Категория:Столици", "Столици.", 3, 14)
    )
    return ROOT.format(lang=lang) + SITEINFO.format(dbname=dbname, host=host) + pages + "</mediawiki>\n"


@pytest.fixture
def bgwiki(tmp_path):
    path = tmp_path / "bgwiki-20240601-pages-articles.xml.bz2"
    path.write_bytes(bz2.compress(bgwiki_xml().encode()))
    return path


def articles(source) -> dict[str, str]:
    pages = (p for shard in plan_shards(source) for p in read_shard(shard))
    return {a.title: a.text for a in clean_pages(pages)}


# --- <siteinfo> -------------------------------------------------------------------------------------------


def test_the_siteinfo_gives_the_language_and_the_namespace_table(bgwiki):
    site = read_siteinfo(bgwiki)
    assert site.lang == "bg" and site.dbname == "bgwiki" and site.base.startswith("https://bg.wikipedia.org/")
    assert (
        (14, "Категория") in site.namespaces and (6, "Файл") in site.namespaces and (0, "") in site.namespaces
    )
    assert site.language == "bg"
    assert declared_language(plan_shards(bgwiki)[0]).evidence == 'xml:lang="bg" in its header'


def test_without_xml_lang_the_dbname_or_the_base_url_gives_the_language():
    assert SiteInfo(dbname="bgwiki").language_and_evidence == ("bg", "<dbname>bgwiki</dbname>")
    assert SiteInfo(dbname="zh_yuewiki").language == "zh-yue"
    assert SiteInfo(dbname="simplewiki").language == "en"
    assert SiteInfo(dbname="frwiktionary").language == "fr"
    assert SiteInfo(base="https://de.wikipedia.org/wiki/Wikipedia:Hauptseite").language == "de"
    assert SiteInfo(dbname="commonswiki", base="https://commons.wikimedia.org/").language is None
    assert SiteInfo().language is None


def test_the_english_excerpt_declares_english_and_passes_with_the_default_model(enwiki_excerpt):
    site = read_siteinfo(enwiki_excerpt)
    assert site.language == "en" and site.dbname == "enwiki" and (14, "Category") in site.namespaces
    assert check_language(plan_shards(enwiki_excerpt), "en_core_web_sm") == "en"


def test_a_multistream_shard_gets_the_namespace_table_from_the_header_stream(tmp_path):
    xml = bgwiki_xml()
    first, second = xml.index("  <page>"), xml.index("  <page>", xml.index("  <page>") + 1)
    end = xml.rindex("</mediawiki>")
    streams = [xml[:first], xml[first:second], xml[second:end], xml[end:]]
    dump, offsets = bytearray(), []
    for stream in streams:
        offsets.append(len(dump))
        dump += bz2.compress(stream.encode())
    path = tmp_path / "bgwiki-20240601-pages-articles-multistream.xml.bz2"
    path.write_bytes(bytes(dump))
    index = "".join(f"{offsets[1]}:1:София\n{offsets[2]}:2:Пловдив\n{offsets[2]}:3:Категория:Столици\n")
    (tmp_path / "bgwiki-20240601-pages-articles-multistream-index.txt.bz2").write_bytes(
        bz2.compress(index.encode())
    )
    shards = plan_shards(path, streams_per_shard=1)
    assert [s.kind for s in shards] == ["multistream", "multistream"] and shards[1].start == offsets[2]
    (plovdiv,) = [p for p in read_shard(shards[1]) if p.ns == 0]  # a shard that does not hold the header
    assert "категория" in plovdiv.namespaces.category and "файл" in plovdiv.namespaces.media
    plain = tmp_path / "bgwiki-20240601-pages-articles.xml"
    plain.write_text(xml, encoding="utf-8")
    assert articles(path) == articles(plain)


# --- localized links --------------------------------------------------------------------------------------


def test_localized_file_and_category_links_are_dropped(bgwiki):
    texts = articles(bgwiki)
    assert set(texts) == {"София", "Пловдив"}  # the category page (ns 14) is not an article
    sofia, plovdiv = texts["София"], texts["Пловдив"]
    assert sofia.startswith("София е столицата и най-големият град на България.\nГрадът е разположен в")
    assert "История" in sofia.split("\n") and "основано от траките" in sofia
    for gone in ("Категория", "категория", "Столици в Европа", "Градове в България", "мини", "Sofia-collage",
                 "Изглед", "Картинка", "Александър Невски", "Sofia", "[[", "]]"):  # fmt: skip
        assert gone not in sofia, gone
    # [[Медия:…]] and the always-valid English names go; a visible [[:Категория:…|label]] keeps its label.
    assert "Другите градове също имат дълга история." in plovdiv
    for gone in ("Медия", "anthem", "Category", "thumb", "Plovdiv.jpg"):
        assert gone not in plovdiv, gone


def test_dump_pages_carry_their_namespaces_to_worker_processes(bgwiki):
    pages = list(read_shard(plan_shards(bgwiki)[0]))
    assert all(isinstance(p, DumpPage) for p in pages)
    shipped = pickle.loads(pickle.dumps(pages))
    assert shipped == pages and "категория" in shipped[0].namespaces.category


# --- UTF-16 -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("codec", ["utf-16", "utf-16-le", "utf-16-be"])
@pytest.mark.parametrize("compressed", [False, True])
def test_a_utf16_dump_is_read_like_its_utf8_original(tmp_path, bgwiki, codec, compressed):
    xml = '<?xml version="1.0" encoding="UTF-16"?>\n' + bgwiki_xml()
    data = xml.encode(codec)  # "utf-16" writes a byte-order mark, -le/-be do not
    path = tmp_path / ("bgwiki-utf16.xml.bz2" if compressed else "bgwiki-utf16.xml")
    path.write_bytes(bz2.compress(data) if compressed else data)
    assert [s.kind for s in plan_shards(path)] == ["xml-bz2" if compressed else "xml"]
    assert read_siteinfo(path).language == "bg"
    assert articles(path) == articles(bgwiki)


def test_a_utf32_dump_is_named_as_such(tmp_path):
    path = tmp_path / "dump.xml"
    path.write_bytes(bgwiki_xml().encode("utf-32"))
    with pytest.raises(InputError, match="UTF-32 encoded XML") as info:
        plan_shards(path)
    assert str(path) in str(info.value)


# --- the NER model's language -----------------------------------------------------------------------------


def test_the_model_language_is_read_without_loading_the_model(tmp_path):
    assert model_language("en_core_web_sm") == "en"  # the asset: meta.json, or spaCy's naming if not fetched
    assert model_language("blank:bg") == "bg"
    meta = tmp_path / "bg_pipeline"
    meta.mkdir()
    (meta / "meta.json").write_text(json.dumps({"lang": "bg", "name": "pipeline", "version": "0.0.1"}))
    assert model_language(str(meta)) == "bg"
    config_only = tmp_path / "xx_pipeline"
    config_only.mkdir()
    (config_only / "config.cfg").write_text(
        '[paths]\ntrain = null\n\n[nlp]\nlang = "xx"\npipeline = ["ner"]\n'
    )
    assert model_language(str(config_only)) == "xx"
    with pytest.raises(ConfigError, match="'bg_core_news_nonexistent' could not be loaded"):
        model_language("bg_core_news_nonexistent")


def test_the_languages_that_match():
    assert same_language("bg", "bg") and same_language("simple", "en") and same_language("no", "nb")
    assert same_language("be-tarask", "be") and not same_language("bg", "en")


# --- the check ------------------------------------------------------------------------------------------


def test_a_bulgarian_dump_is_refused_with_an_english_ner_model(bgwiki):
    with pytest.raises(InputError) as info:
        check_language(plan_shards(bgwiki), "en_core_web_sm")
    message = str(info.value)
    assert message.startswith(f'{bgwiki}: a Bulgarian (bg) Wikipedia dump (xml:lang="bg" in its header)')
    assert "en_core_web_sm covers English (en) only" in message and "-o ner_model=" in message
    assert "\n" not in message


def test_a_bulgarian_dump_passes_with_a_bulgarian_or_a_multi_language_model(bgwiki):
    assert check_language(plan_shards(bgwiki), "blank:bg") == "bg"
    assert check_language(plan_shards(bgwiki), "blank:xx") == "bg"


def test_the_dbname_decides_when_the_root_has_no_xml_lang(tmp_path):
    path = tmp_path / "dump.xml"
    path.write_text(bgwiki_xml(lang=""), encoding="utf-8")
    with pytest.raises(InputError, match=r"Bulgarian \(bg\) Wikipedia dump \(<dbname>bgwiki</dbname>\)"):
        check_language(plan_shards(path), "en_core_web_sm")


def test_a_hub_dataset_or_a_parquet_folder_named_for_its_language_is_checked_without_reading(tmp_path):
    shards = plan_shards("wikimedia/wikipedia", hf_name="20231101.bg")  # no network: the name is enough
    with pytest.raises(InputError, match=r"Bulgarian \(bg\) source \(dataset config 20231101.bg\)"):
        check_language(shards, "en_core_web_sm")
    assert check_language(plan_shards("wikimedia/wikipedia", hf_name="20231101.en"), "en_core_web_sm") == "en"
    folder = tmp_path / "20231101.bg"
    folder.mkdir()
    records = [{"id": "1", "url": "", "title": "България", "text": BULGARIAN_PROSE}]
    pq.write_table(pa.Table.from_pylist(records), folder / "train-00000-of-00001.parquet")
    with pytest.raises(InputError, match=r"source \(in a folder named 20231101.bg\)"):
        check_language(plan_shards(folder), "en_core_web_sm")


def write_jsonl(path, texts: list[str]) -> None:
    lines = (
        json.dumps({"id": str(i), "title": f"Page {i}", "text": t}, ensure_ascii=False)
        for i, t in enumerate(texts)
    )
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def test_a_source_that_does_not_say_its_language_has_its_text_checked(tmp_path):
    bulgarian = tmp_path / "pages.jsonl"
    write_jsonl(bulgarian, [BULGARIAN_PROSE * 3] * 4)
    with pytest.raises(InputError) as info:
        check_language(plan_shards(bulgarian), "en_core_web_sm")
    message = str(info.value)
    assert message.startswith(f"{bulgarian}: the text does not look like English (en)")
    assert "0.0% of the first" in message and "mostly Cyrillic" in message and "-o ner_model=" in message
    assert check_language(plan_shards(bulgarian), "blank:bg") is None  # Bulgarian stop words: it passes
    english = tmp_path / "english.jsonl"
    write_jsonl(english, [ENGLISH_PROSE * 3] * 4)
    assert check_language(plan_shards(english), "en_core_web_sm") is None
    short = tmp_path / "short.jsonl"
    write_jsonl(short, ["Столица на България е София."])
    assert check_language(plan_shards(short), "en_core_web_sm") is None  # too little text to judge


def test_a_dump_without_siteinfo_has_its_text_checked(tmp_path):
    xml = ROOT.format(lang="") + "".join(page(f"Статия {i}", BULGARIAN_PROSE * 2, i) for i in range(1, 5))
    path = tmp_path / "fragment.xml"
    path.write_text(xml + "</mediawiki>\n", encoding="utf-8")
    assert read_siteinfo(path) is None
    with pytest.raises(InputError, match="the text does not look like English"):
        check_language(plan_shards(path), "en_core_web_sm")


def test_the_english_excerpt_as_jsonl_passes_the_text_check(enwiki_excerpt, tmp_path):
    pages = [p for shard in plan_shards(enwiki_excerpt) for p in read_shard(shard)]
    path = tmp_path / "excerpt.jsonl"
    write_jsonl(path, [p.text for p in pages if p.ns == 0 and not p.redirect])
    assert check_language(plan_shards(path), "en_core_web_sm") is None
    with pytest.raises(InputError, match=r"German \(de\)"):
        check_language(plan_shards(path), "blank:de")


# --- the build ------------------------------------------------------------------------------------------


def test_build_corpus_refuses_a_bulgarian_dump_in_one_line_before_any_work(bgwiki, tmp_path):
    out = tmp_path / "out"
    result = subprocess.run(
        [sys.executable, "-m", "memtrain", "build-corpus", "--source", str(bgwiki), "--out", str(out),
         "--preset", "tiny"],
        capture_output=True, text=True,
    )  # fmt: skip
    message = result.stderr + result.stdout
    assert result.returncode != 0 and "Traceback" not in message
    assert str(bgwiki) in message and "Bulgarian (bg)" in message and "-o ner_model=" in message
    assert not list(out.glob("**/*.parquet"))  # refused before the read stage
