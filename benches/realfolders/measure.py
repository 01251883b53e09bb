#!/usr/bin/env python3
"""Real folders as they sit on disk: index a documentation folder and ask its questions.

Why: `pinpoint`'s promise is a few precise passages; on real documentation folders
generated files (mdBook's search index, minified bundles) and aggregate pages (mdBook's
`print.html`, the whole book on one page) took the answer slots. This measures, for one
folder and its questions (`*.jsonl`: {"query", "relevant": [path, ...]}, paths relative to
the folder):
- chunks, index wall time and size on disk;
- the share of handed-over slots (`query -k 5`, the default cut-off) taken by generated or
  aggregate files (`*.js`, `*.css`, `*.json`, `print.html`, `toc.html`);
- questions whose first passage is from the right page, and whose handed-over passages hold it.

Usage: measure.py PINPOINT_BIN FOLDER QUESTIONS.jsonl INDEX_DIR [--reuse]   (prints one JSON line)
Standard library only.
"""
import json
import os
import re
import subprocess
import sys
import time

JUNK = re.compile(r"(\.js|\.css|\.json|(^|/)print\.html|(^|/)toc\.html)$")


def du(path):
    return sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(path) for f in fs)


def main():
    exe, folder, questions, index = sys.argv[1:5]
    reuse = "--reuse" in sys.argv
    out = {"folder": folder}
    if not reuse:
        t = time.time()
        r = subprocess.run([exe, "index", folder, "--index", index, "--json"], capture_output=True, text=True)
        if r.returncode != 0:
            sys.exit(r.stderr)
        out["index_s"] = round(time.time() - t, 1)
        rep = json.loads(r.stdout)
        out["skipped"] = len(rep.get("skipped", []))
        out["peak_rss_bytes"] = rep.get("peak_rss_bytes")
    st = json.loads(subprocess.run([exe, "stats", "--index", index, "--json"], capture_output=True, text=True, check=True).stdout)
    out["documents"], out["chunks"] = st["documents"], st["chunks"]
    out["disk_bytes"] = du(index)
    slots = junk = first = top5 = n = 0
    per = []
    for line in open(questions):
        q = json.loads(line)
        r = subprocess.run([exe, "query", q["query"], "--index", index, "-k", "5", "--json"], capture_output=True, text=True, check=True)
        hits = [h["path"] for h in json.loads(r.stdout)["hits"]]
        n += 1
        slots += len(hits)
        junk += sum(1 for h in hits if JUNK.search(h))
        f = bool(hits) and hits[0] in q["relevant"]
        t5 = any(h in q["relevant"] for h in hits)
        first += f
        top5 += t5
        per.append({"query": q["query"], "hits": hits, "first": f, "top5": t5})
    out.update(questions=n, slots=slots, junk_share=round(junk / max(slots, 1), 4),
               answered_first=round(first / n, 4), in_top5=round(top5 / n, 4), per_query=per)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
