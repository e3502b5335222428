"""Real search-QA data for the tests: NQ and HotpotQA questions in FlashRAG's form, HotpotQA paragraphs as a
wiki-18 collection (where gold paragraphs are findable)."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from test_retriever import HOTPOT_DEV, paragraphs, write_jsonl

NQ_HEAD = Path(__file__).resolve().parents[2] / "shared" / "data" / "nq" / "test.head.jsonl"


def write_search_data(root: Path, nq: str) -> Path:
    """The 17 real NQ questions at ``root/nq`` (e.g. ``nq/test.jsonl``), the first 8 HotpotQA dev questions
    as ``root/hotpotqa.jsonl``, and the 392 HotpotQA paragraphs as the collection ``root/wiki.jsonl``
    (returned)."""
    (root / nq).parent.mkdir(parents=True, exist_ok=True)
    (root / nq).write_text(NQ_HEAD.read_text())
    records = json.loads(HOTPOT_DEV.read_text())
    with (root / "hotpotqa.jsonl").open("w") as f:
        for r in records[:8]:
            f.write(json.dumps({"id": r["_id"], "question": r["question"], "golden_answers": [r["answer"]]}))
            f.write("\n")
    return write_jsonl(root / "wiki.jsonl", paragraphs(records))


@contextmanager
def serving(httpd) -> Iterator[str]:
    """`httpd` (an HTTP server bound to 127.0.0.1) serving in a thread; its URL."""
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}"
    finally:
        httpd.shutdown()
        httpd.server_close()
