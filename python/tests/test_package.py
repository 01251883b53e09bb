"""The Python package against the engine: the same hits as the CLI, errors that name the
cause, and shards that together hold every document exactly once."""

import json
import os
import shutil
import subprocess

import pytest

import pinpoint

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
MODEL = os.path.join(ROOT, "models", "all-MiniLM-L6-v2")
SAMPLES = os.path.join(ROOT, "samples")
CLI = os.path.join(ROOT, "target", "release", "pinpoint")


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    d = tmp_path_factory.mktemp("idx")
    idx = pinpoint.Index(d / "index", model=MODEL)
    report = idx.add_folder(SAMPLES)
    return d / "index", idx, report


def test_index_and_search_match_the_cli(built):
    path, idx, report = built
    assert report["documents_total"] == len([f for f in os.listdir(SAMPLES) if not f.startswith(".")])
    answer = idx.search("how do tides work", k=3)
    assert answer["hits"][0]["path"] == "tides.txt"
    assert set(answer["hits"][0]) >= {"rank", "path", "line_start", "line_end", "unit", "heading", "score", "text", "cosine"}
    if os.path.exists(CLI):
        out = subprocess.run(
            [CLI, "query", "how do tides work", "--index", str(path), "-k", "3", "--json"],
            capture_output=True, text=True, check=True,
        ).stdout
        cli = json.loads(out)
        assert [h["path"] for h in cli["hits"]] == [h["path"] for h in answer["hits"]]
    stats = idx.stats()
    assert stats["documents"] == report["documents_total"]


def test_options_filters_and_errors_name_the_cause(built):
    _, idx, _ = built
    only_md = idx.search("how do tides work and what about volcanoes", k=10, no_cutoff=True, where="ext:md")
    assert only_md["hits"] and all(h["path"].endswith(".md") for h in only_md["hits"])
    with pytest.raises(pinpoint.PinpointError, match="max_token"):
        idx.search("tides", max_token=3)
    with pytest.raises(pinpoint.PinpointError, match="position"):
        idx.search("tides", where="ext IN (md")
    with pytest.raises(pinpoint.PinpointError, match="not a folder"):
        idx.add_folder(os.path.join(SAMPLES, "missing"))


def test_documents_collections_and_commit(tmp_path):
    idx = pinpoint.Index(tmp_path / "docs", model=MODEL)
    idx.add_document("r1", "Kelp", "Kelp forests grow in cold water.", collection="records")
    idx.add_document("n1", "Tea", "Green tea is steeped at 80 degrees.")
    report = idx.commit()
    assert report["documents_total"] == 2
    names = sorted(c["name"] for c in idx.collections())
    assert names == ["", "records"]
    hits = idx.search("kelp", collections=["records"], no_cutoff=True)["hits"]
    assert [h["path"] for h in hits] == ["records/r1"]


def test_shards_hold_every_document_once_and_fuse(tmp_path):
    shards = [pinpoint.Index(tmp_path / f"shard-{i}", model=MODEL, shard=(i, 3)) for i in range(3)]
    for s in shards:
        s.add_folder(SAMPLES)
    held = [s.stats()["documents"] for s in shards]
    files = [f for f in os.listdir(SAMPLES) if not f.startswith(".")]
    assert sum(held) == len(files)
    for f in files:
        owner = pinpoint.shard_of(f, 3)
        assert shards[owner].search(f.split(".")[0].replace("_", " "), k=20, no_cutoff=True, no_abstain=True)["hits"]
    # A re-run embeds nothing.
    assert all(s.add_folder(SAMPLES)["chunks_embedded"] == 0 for s in shards)
    fused = pinpoint.search_many(shards, "how do tides work", k=3)
    assert fused["hits"][0]["path"] == "tides.txt"
    assert [h["rank"] for h in fused["hits"]] == list(range(1, len(fused["hits"]) + 1))
    with pytest.raises(pinpoint.PinpointError, match="shard"):
        pinpoint.Index(tmp_path / "bad", model=MODEL, shard=(3, 3))
