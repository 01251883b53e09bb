"""pinpoint from Python: open or create an index, sync folders or add documents, search.

The Rust crate is the engine; this package is a thin binding. Options and answers are the
JSON `pinpoint query --json` and `pinpoint serve` speak, as Python dicts here, so a hit has
the same fields everywhere: ``rank``, ``path``, ``line_start``, ``line_end``, ``unit``,
``heading``, ``score``, ``text`` (and ``cosine``, its similarity to the question, which a
router fusing several shards breaks ties with). Calls that work release the GIL.

    import pinpoint
    idx = pinpoint.Index("index-data")
    idx.add_folder("samples")
    answer = idx.search("how do tides work", k=3, where="ext:md")
"""

import json
import os

from ._pinpoint import Index as _Index
from ._pinpoint import PinpointError, shard_of
from ._pinpoint import fuse as _fuse

__all__ = ["Index", "PinpointError", "fuse", "search_many", "shard_of"]


class Index:
    """One index folder (created when absent, unless ``read_only``).

    ``shard=(i, n)``: folder syncs index only the files of shard ``i`` of ``n`` (the
    engine's stable hash of each file's path), the building block of a sharded build.
    """

    def __init__(self, path, model=None, precision=None, read_only=False, shard=None):
        self.path = os.fspath(path)
        self._index = _Index(
            self.path,
            model=None if model is None else os.fspath(model),
            precision=precision,
            read_only=read_only,
            shard=None if shard is None else (int(shard[0]), int(shard[1])),
        )

    def add_folder(self, folder, collection=None, description=None):
        """Syncs ``folder`` (as ``pinpoint index``); returns the report."""
        return json.loads(self._index.add_folder(os.fspath(folder), collection, description))

    def add_document(self, id, title, text, collection=None):
        """Stages a document (committed by :meth:`commit`)."""
        self._index.add_document(id, title, text, collection)

    def remove_document(self, key):
        """Stages the removal of a document by key."""
        self._index.remove_document(key)

    def commit(self):
        """Commits what is staged; returns the report."""
        return json.loads(self._index.commit())

    def search(self, query, **options):
        """Answers ``query``; ``options`` are those of ``query --json`` (``k``, ``mode``,
        ``collections``, ``where``, ``filter``, ``max_tokens``, ``no_cutoff``, ...). An
        unknown option is an error that names it."""
        return json.loads(self._index.search(query, json.dumps(options)))

    def stats(self):
        """What the index holds (``pinpoint stats --json``)."""
        return json.loads(self._index.stats())

    def collections(self):
        """Each collection's name, folder, description, documents and chunks."""
        return json.loads(self._index.collections())


def fuse(answers, k=5, shards=True):
    """Merges answers to one question; returns ``{"hits": [...]}``. ``shards``: the answers
    come from the shards of one folder, merged by the engine's own blend of fused and
    reranker scores over all their hits (within noise of one index); otherwise from
    separate indexes, fused by rank with ties by cosine (``query --index A --index B``)."""
    return json.loads(_fuse(json.dumps(list(answers)), int(k), bool(shards)))


def search_many(indexes, query, shards=True, **options):
    """Asks every index and merges the answers (see :func:`fuse`): the query side of a
    sharded index in one process (the Ray router does the same across machines)."""
    answers = [i.search(query, **options) for i in indexes]
    fused = fuse(answers, options.get("k", 5), shards=shards)
    fused["query"] = query
    fused["mode"] = answers[0]["mode"] if answers else options.get("mode", "hybrid")
    return fused
