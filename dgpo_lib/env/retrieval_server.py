"""A Search-R1 compatible retrieval server (`POST /retrieve`) and its client, standard library only.

Request  `{"queries": [str, ...], "topk": int, "return_scores": bool}`
Response `{"result": [[{"document": {"id", "contents"}, "score": float}, ...], ...]}` (scores only if asked).

The server binds 127.0.0.1 unless told otherwise, caps the request body, the number of queries and topk, and
answers malformed requests with a 4xx JSON error instead of crashing.
`python -m dgpo_lib.env.retrieval_server --preset paper --port 8000` serves the preset's index.
"""
from __future__ import annotations

import json
import logging
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

log = logging.getLogger(__name__)

MAX_BODY = 1 << 20  # 1 MiB
MAX_QUERIES = 1024
MAX_TOPK = 100
MAX_QUERY_CHARS = 2048


class BadRequest(ValueError):
    pass


def parse_request(body: bytes) -> tuple[list[str], int, bool]:
    try:
        req = json.loads(body.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise BadRequest(f"body is not JSON: {e}") from None
    if not isinstance(req, dict):
        raise BadRequest("body must be a JSON object")
    qs = req.get("queries")
    if not isinstance(qs, list) or not all(isinstance(q, str) for q in qs):
        raise BadRequest("'queries' must be a list of strings")
    if len(qs) > MAX_QUERIES:
        raise BadRequest(f"at most {MAX_QUERIES} queries per request")
    topk = req.get("topk", 3)
    if topk is None:
        topk = 3
    if not isinstance(topk, int) or isinstance(topk, bool) or not 1 <= topk <= MAX_TOPK:
        raise BadRequest(f"'topk' must be an integer in 1..{MAX_TOPK}")
    scores = req.get("return_scores", False)
    if not isinstance(scores, bool):
        raise BadRequest("'return_scores' must be true or false")
    return [q[:MAX_QUERY_CHARS] for q in qs], topk, scores


def make_handler(retriever):
    lock = threading.Lock()  # one search at a time: faiss + torch already use every core

    class Handler(BaseHTTPRequestHandler):
        def _send(self, code: int, obj) -> None:
            data = json.dumps(obj).encode()
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_POST(self):  # noqa: N802 (http.server API)
            if self.path.rstrip("/") != "/retrieve":
                return self._send(404, {"error": f"no route {self.path}; use POST /retrieve"})
            try:
                n = int(self.headers.get("Content-Length", "0"))
            except ValueError:
                return self._send(400, {"error": "bad Content-Length"})
            if n <= 0:
                return self._send(400, {"error": "empty body"})
            if n > MAX_BODY:
                self.close_connection = True
                if n <= 16 * MAX_BODY:  # drain a moderately large body so the client reads our answer, not a reset
                    for _ in range(0, n, 65536):
                        self.rfile.read(min(65536, n))
                        n -= 65536
                return self._send(413, {"error": f"body over {MAX_BODY} bytes"})
            try:
                queries, topk, want_scores = parse_request(self.rfile.read(n))
            except BadRequest as e:
                return self._send(400, {"error": str(e)})
            with lock:
                if hasattr(retriever, "search_with_scores"):
                    hits, scores = retriever.search_with_scores(queries, topk)
                else:
                    hits, scores = retriever.search(queries, topk), None
            result = []
            for i, row in enumerate(hits):
                items = []
                for j, p in enumerate(row):
                    item = {"document": {"id": p.id, "contents": p.contents}}
                    if want_scores:
                        item["score"] = scores[i][j] if scores else None
                    items.append(item)
                result.append(items)
            return self._send(200, {"result": result})

        def do_GET(self):  # noqa: N802
            self._send(405 if self.path.rstrip("/") == "/retrieve" else 404, {"error": "use POST /retrieve"})

        def log_message(self, fmt, *args):
            log.debug("retrieval server: " + fmt, *args)

    return Handler


def serve(retriever, host: str = "127.0.0.1", port: int = 8000) -> ThreadingHTTPServer:
    """Start the server in a background thread; returns it (call `.shutdown()` to stop)."""
    srv = ThreadingHTTPServer((host, port), make_handler(retriever))
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    return srv


def main(argv=None):
    from dgpo_lib.cli import parse, parser
    from dgpo_lib.config import load_config
    from dgpo_lib.pipeline import Run

    ap = parser("Serve a preset's retriever over HTTP (Search-R1's /retrieve).")
    ap.add_argument("--host", default="127.0.0.1", help="bind address (default loopback only)")
    ap.add_argument("--port", type=int, default=8000)
    a = parse(ap, argv)
    logging.basicConfig(level=logging.INFO)
    cfg = load_config(a.preset, a.overrides + ["retrieval.server_url=null"])
    srv = serve(Run(cfg).resources.retriever(), a.host, a.port)
    log.info("serving POST http://%s:%d/retrieve", a.host, a.port)
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        srv.shutdown()


if __name__ == "__main__":
    main()
