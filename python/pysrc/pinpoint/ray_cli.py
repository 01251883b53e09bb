"""``pinpoint-ray``: build and serve a sharded pinpoint index on a Ray cluster.

A shard is an ordinary pinpoint index folder holding the files of a source folder whose
path hashes to it (the engine's stable hash, :func:`pinpoint.shard_of`). Ray runs the work;
pinpoint keeps no cluster state of its own.

    pinpoint-ray build SOURCE OUT --shards N [--model DIR] [--address auto]
    pinpoint-ray serve OUT [--port 8000] [--address auto]

``build`` runs one Ray task per shard, each syncing ``OUT/shard-<i>`` with ``SOURCE``
through the package (only changed files are embedded again on a re-run). A task whose
worker dies is retried by Ray; the engine's commit protocol leaves the shard at its last
committed generation, so the retry resumes and the result equals an undisturbed run.
SOURCE and OUT must be paths every node can read and write (a shared filesystem).

``serve`` starts a Ray Serve application: one replica per shard answering searches, and a
router that fans a question out, fuses the answers by the engine's rule and speaks the
HTTP JSON of ``pinpoint serve`` (``POST /query`` with ``{"query": ..., options}``).
"""

import argparse
import json
import os
import sys
import time


def _shard_dirs(out):
    names = sorted(
        (n for n in os.listdir(out) if n.startswith("shard-")),
        key=lambda n: int(n.split("-", 1)[1]),
    )
    if not names:
        raise SystemExit(f"error: {out} holds no shard-<i> folders; build it with `pinpoint-ray build`")
    return [os.path.join(out, n) for n in names]


def _build_shard(source, out, index, count, model):
    """Syncs shard ``index`` of ``count``: a Ray task."""
    import pinpoint

    # A hook for the fault test: the first attempt of this shard's task dies mid-build,
    # as a killed worker does (the marker makes the retry go through).
    crash = os.environ.get("PINPOINT_RAY_CRASH_SHARD")
    marker = os.path.join(out, f".crashed-{index}")
    if crash is not None and int(crash) == index and not os.path.exists(marker):
        os.makedirs(out, exist_ok=True)
        open(marker, "w").close()
        os.kill(os.getpid(), 9)
    path = os.path.join(out, f"shard-{index}")
    idx = pinpoint.Index(path, model=model, shard=(index, count))
    t = time.time()
    report = idx.add_folder(source)
    report["shard"] = index
    report["seconds"] = time.time() - t
    return report


def build(args):
    import ray

    # The fault-test hook reaches workers on every node through the job's environment.
    env = {k: os.environ[k] for k in ("PINPOINT_RAY_CRASH_SHARD",) if k in os.environ}
    ray.init(
        address=args.address,
        ignore_reinit_error=True,
        log_to_driver=False,
        runtime_env={"env_vars": env} if env else None,
    )
    source = os.path.abspath(args.source)
    out = os.path.abspath(args.out)
    os.makedirs(out, exist_ok=True)
    model = None if args.model is None else os.path.abspath(args.model)
    task = ray.remote(num_cpus=args.cpus_per_shard, max_retries=args.retries)(_build_shard)
    t = time.time()
    refs = [task.remote(source, out, i, args.shards, model) for i in range(args.shards)]
    reports = ray.get(refs)
    summary = {
        "shards": args.shards,
        "seconds": time.time() - t,
        "documents": sum(r["documents_total"] for r in reports),
        "chunks": sum(r["chunks_total"] for r in reports),
        "chunks_embedded": sum(r["chunks_embedded"] for r in reports),
        "per_shard": reports,
    }
    print(json.dumps(summary))


def _serve_app(out, model, cpus):
    from ray import serve
    from starlette.requests import Request
    from starlette.responses import JSONResponse

    # A replica answers a question in milliseconds: a share of a CPU each, so that a small
    # cluster (one replica per shard plus the router) is not left waiting for cores.
    @serve.deployment(ray_actor_options={"num_cpus": cpus})
    class Shard:
        def __init__(self, path):
            import pinpoint

            self.index = pinpoint.Index(path, model=model, read_only=True)

        def search(self, query, options):
            import pinpoint

            # A user's mistake comes back as an answer, not as an exception Ray would wrap
            # into an internal error.
            try:
                return self.index.search(query, **options)
            except pinpoint.PinpointError as e:
                return {"error": str(e)}

    @serve.deployment(ray_actor_options={"num_cpus": cpus})
    class Router:
        def __init__(self, *shards):
            self.shards = shards

        async def __call__(self, request: Request):
            import pinpoint

            if request.method != "POST" or request.url.path.rstrip("/") != "/query":
                return JSONResponse({"error": "POST /query with a JSON body"}, status_code=404)
            try:
                body = await request.json()
                query = body.pop("query", None) or body.pop("q", None)
                if not isinstance(query, str) or not query.strip():
                    return JSONResponse({"error": "no question (send {\"query\": ...})"}, status_code=400)
                answers = [await s.search.remote(query, dict(body)) for s in self.shards]
                errors = [a["error"] for a in answers if "error" in a]
                if errors:
                    return JSONResponse({"error": errors[0]}, status_code=400)
                fused = pinpoint.fuse(answers, body.get("k", 5))
                return JSONResponse(
                    {"query": query, "mode": answers[0]["mode"], **fused}
                )
            except pinpoint.PinpointError as e:
                return JSONResponse({"error": str(e)}, status_code=400)
            except ValueError as e:
                return JSONResponse({"error": f"bad JSON: {e}"}, status_code=400)

    shards = [Shard.options(name=f"shard-{i}").bind(p) for i, p in enumerate(_shard_dirs(out))]
    return Router.bind(*shards)


def serve_cmd(args):
    import ray
    from ray import serve

    ray.init(address=args.address, ignore_reinit_error=True, log_to_driver=False)
    serve.start(http_options={"host": args.host, "port": args.port})
    model = None if args.model is None else os.path.abspath(args.model)
    serve.run(
        _serve_app(os.path.abspath(args.out), model, args.cpus_per_replica),
        name="pinpoint",
        route_prefix="/",
    )
    print(json.dumps({"serving": f"http://{args.host}:{args.port}/query"}), flush=True)
    if args.detach:
        return
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        serve.shutdown()


def main(argv=None):
    p = argparse.ArgumentParser(prog="pinpoint-ray", description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    b = sub.add_parser("build", help="build or re-sync a sharded index with one Ray task per shard")
    b.add_argument("source")
    b.add_argument("out")
    b.add_argument("--shards", type=int, required=True)
    b.add_argument("--model")
    b.add_argument("--address", default=None, help="Ray cluster (default: RAY_ADDRESS or a local one)")
    b.add_argument("--retries", type=int, default=3, help="retries of a shard whose worker dies")
    b.add_argument("--cpus-per-shard", type=float, default=1.0)
    s = sub.add_parser("serve", help="serve a sharded index with Ray Serve (router + one replica per shard)")
    s.add_argument("out")
    s.add_argument("--model")
    s.add_argument("--address", default=None)
    s.add_argument("--host", default="127.0.0.1")
    s.add_argument("--port", type=int, default=8000)
    s.add_argument("--detach", action="store_true", help="return once the application runs")
    s.add_argument("--cpus-per-replica", type=float, default=0.25)
    args = p.parse_args(argv)
    if args.cmd == "build":
        if args.shards < 1:
            p.error("--shards must be at least 1")
        build(args)
    else:
        serve_cmd(args)


if __name__ == "__main__":
    sys.exit(main())
