"""Split articles into DPR-style passages of about `passage_words` words, each carrying its title."""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from .schema import Article


def passage_text(title: str, text: str) -> str:
    """How a passage appears inside an episode's document: its title line, then its text."""
    return f"{title}\n{text}"


def split_article(article: Article, passage_words: int) -> list[dict]:
    """Disjoint blocks of `passage_words` words; a short tail (< half a block) joins the block before it."""
    words = article.text.split()
    blocks = [words[i : i + passage_words] for i in range(0, len(words), passage_words)]
    if len(blocks) > 1 and len(blocks[-1]) < passage_words // 2:
        blocks[-2].extend(blocks.pop())
    return [
        {
            "passage_id": f"{article.id}#{position}",
            "article_id": article.id,
            "title": article.title,
            "position": position,
            "text": " ".join(block),
            "num_words": len(block),
        }
        for position, block in enumerate(blocks)
    ]


def iter_passages(articles: Iterable[Article], passage_words: int) -> Iterator[dict]:
    for article in articles:
        yield from split_article(article, passage_words)
