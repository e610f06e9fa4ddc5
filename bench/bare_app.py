"""The webhook benchmark's baselines: a bare Flask app that reads the body and answers
200 {"code":0}, served by the same server as `recpipe serve` (`recpipe.serving`) with the
same settings.

With `--store DSN` it also does the one thing no webhook can skip: before answering, it
stores the body durably, one INSERT per request on its thread's own autocommit psycopg
connection (as recpipe's intake does), into a table of its own. The difference between
this and recpipe is then what recpipe adds beyond a durable write: the signature, the
parsing, the bookkeeping in the same statement, the dispatch, the log line and metrics.

    python bench/bare_app.py --port 8090 --workers 1 --threads 8 [--store postgresql://...]
"""

from __future__ import annotations

import argparse
import sys
import threading
from pathlib import Path
from typing import Any

from flask import Flask, Response, jsonify, request

app = Flask("bare")
STORE = {"dsn": ""}
_local = threading.local()
TABLE = "bare_callbacks"


def _connection() -> Any:
    import psycopg

    conn = getattr(_local, "conn", None)
    if conn is None or conn.closed:
        conn = _local.conn = psycopg.connect(STORE["dsn"], autocommit=True)
    return conn


@app.post("/callbacks/gme")
def gme_callback() -> tuple[Response, int]:
    body = request.get_data()
    if STORE["dsn"]:
        _connection().execute(
            f"INSERT INTO {TABLE} (body) VALUES (%s)",  # noqa: S608  # a constant
            (body.decode("utf-8"),),
        )
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
    parser.add_argument("--store", default="", help="PostgreSQL DSN: store each body first")
    args = parser.parse_args()
    if args.store:
        import psycopg

        STORE["dsn"] = args.store
        with psycopg.connect(args.store, autocommit=True) as conn:
            conn.execute(
                f"CREATE TABLE IF NOT EXISTS {TABLE} (id bigserial PRIMARY KEY, body text NOT NULL,"
                " received_at timestamptz NOT NULL DEFAULT now())"
            )
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    from recpipe import serving

    sys.exit(
        serving.serve(
            lambda: [app], [(args.host, args.port)], workers=args.workers, threads=args.threads
        )
    )


if __name__ == "__main__":
    main()
