"""A sharded build and serve on a local Ray cluster of two nodes: a worker killed during the
build, a re-run that embeds nothing, and a question through the Ray Serve router."""

import json
import os
import secrets
import subprocess
import sys
import time
import urllib.request

import pytest

import pinpoint

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
MODEL = os.path.join(ROOT, "models", "all-MiniLM-L6-v2")
SAMPLES = os.path.join(ROOT, "samples")
BIN = os.path.dirname(sys.executable)
RAY = os.path.join(BIN, "ray")
DRIVER = os.path.join(BIN, "pinpoint-ray")
PORT = 6391
ADDRESS = f"127.0.0.1:{PORT}"


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    """A head and a second node on loopback (each with one CPU, so that the shards spread)."""
    tmp = tmp_path_factory.mktemp("ray")
    # Nodes of Ray 2.5x+ join a head only with its token; one for this cluster, which the
    # drivers started below inherit.
    os.environ["RAY_AUTH_MODE"] = "token"
    os.environ["RAY_AUTH_TOKEN"] = secrets.token_hex(32)
    common = ["--num-cpus=1", "--disable-usage-stats"]
    subprocess.run([RAY, "stop", "--force"], capture_output=True)
    subprocess.run(
        [RAY, "start", "--head", f"--port={PORT}", "--include-dashboard=false", f"--temp-dir={tmp}", *common],
        check=True, capture_output=True,
    )
    subprocess.run([RAY, "start", f"--address={ADDRESS}", *common], check=True, capture_output=True)
    yield ADDRESS
    subprocess.run([RAY, "stop", "--force"], capture_output=True)


def run_driver(args, env=None):
    e = dict(os.environ)
    e.update(env or {})
    out = subprocess.run([DRIVER, *args], capture_output=True, text=True, env=e, timeout=240)
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_build_with_a_killed_worker_then_serve(cluster, tmp_path):
    out = tmp_path / "sharded"
    r = run_driver(
        ["build", SAMPLES, str(out), "--shards", "3", "--model", MODEL, "--address", cluster],
        env={"PINPOINT_RAY_CRASH_SHARD": "1"},
    )
    assert (out / ".crashed-1").exists(), "the worker of shard 1 was not killed"
    files = [f for f in os.listdir(SAMPLES) if not f.startswith(".")]
    assert r["documents"] == len(files)
    # The same as an undisturbed build, shard by shard.
    for i in range(3):
        got = pinpoint.Index(out / f"shard-{i}", model=MODEL, read_only=True)
        want = pinpoint.Index(tmp_path / f"plain-{i}", model=MODEL, shard=(i, 3))
        want.add_folder(SAMPLES)
        assert got.stats()["documents"] == want.stats()["documents"]
        for q in ["how do tides work", "sourdough starter", "rust ownership"]:
            a = [h["path"] for h in got.search(q, k=5)["hits"]]
            b = [h["path"] for h in want.search(q, k=5)["hits"]]
            assert a == b, (i, q)
        assert sum(pinpoint.shard_of(f, 3) == i for f in files) == got.stats()["documents"]
    # A second run over an unchanged source embeds nothing.
    again = run_driver(["build", SAMPLES, str(out), "--shards", "3", "--model", MODEL, "--address", cluster])
    assert again["chunks_embedded"] == 0

    # The router: the same answer as fusing the shards in this process.
    run_driver(["serve", str(out), "--model", MODEL, "--address", cluster, "--port", "8931", "--detach"])
    body = json.dumps({"query": "how do tides work", "k": 3}).encode()
    answer = None
    for _ in range(60):
        try:
            req = urllib.request.Request("http://127.0.0.1:8931/query", data=body, headers={"Content-Type": "application/json"})
            answer = json.loads(urllib.request.urlopen(req, timeout=10).read())
            break
        except OSError:
            time.sleep(1)
    assert answer is not None, "the router never answered"
    shards = [pinpoint.Index(out / f"shard-{i}", model=MODEL, read_only=True) for i in range(3)]
    local = pinpoint.search_many(shards, "how do tides work", k=3)
    assert [h["path"] for h in answer["hits"]] == [h["path"] for h in local["hits"]]
    assert answer["hits"][0]["path"] == "tides.txt"
    bad = urllib.request.Request("http://127.0.0.1:8931/query", data=b'{"query": "x", "max_token": 3}', headers={"Content-Type": "application/json"})
    with pytest.raises(urllib.error.HTTPError) as e:
        urllib.request.urlopen(bad, timeout=10)
    assert e.value.code == 400 and b"max_token" in e.value.read()
