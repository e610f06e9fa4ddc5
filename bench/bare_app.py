"""The webhook benchmark's baseline: a bare Flask app that reads the body and answers
200 {"code":0}, served by the same server as `recpipe serve` (`recpipe.serving`) with the
same settings.

    python bench/bare_app.py --port 8090 --workers 1 --threads 8
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from flask import Flask, Response, jsonify, request

app = Flask("bare")


@app.post("/callbacks/gme")
def gme_callback() -> tuple[Response, int]:
    request.get_data()
    return jsonify(code=0), 200


@app.get("/healthz")
def healthz() -> tuple[Response, int]:
    return jsonify(status="ok"), 200


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8090)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--threads", type=int, default=8)
    args = parser.parse_args()
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    from recpipe import serving

    sys.exit(
        serving.serve(lambda: app, args.host, args.port, workers=args.workers, threads=args.threads)
    )


if __name__ == "__main__":
    main()
