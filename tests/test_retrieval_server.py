"""The Search-R1 style /retrieve server: loopback by default, round trip equals in-process search, 4xx on bad input."""
import json
import urllib.error
import urllib.request

import pytest

from dgpo_lib.env.retrieval import RemoteRetriever
from dgpo_lib.env.retrieval_server import MAX_BODY, MAX_TOPK, serve


@pytest.fixture(scope="module")
def server(dense):
    srv = serve(dense, port=0)  # port 0: any free loopback port
    yield srv
    srv.shutdown()


def _post(srv, body: bytes, path="/retrieve"):
    url = f"http://127.0.0.1:{srv.server_address[1]}{path}"
    req = urllib.request.Request(url, body, {"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def test_binds_loopback_by_default(server):
    assert server.server_address[0] == "127.0.0.1"


def test_round_trip_matches_in_process(server, dense):
    client = RemoteRetriever(f"http://127.0.0.1:{server.server_address[1]}")
    qs = ["Scott Derrickson", "Ed Wood film"]
    assert [[p.id for p in r] for r in client.search(qs, 3)] == [[p.id for p in r] for r in dense.search(qs, 3)]
    code, res = _post(server, json.dumps({"queries": qs, "topk": 2, "return_scores": True}).encode())
    assert code == 200 and len(res["result"]) == 2 and len(res["result"][0]) == 2
    assert set(res["result"][0][0]) == {"document", "score"} and "contents" in res["result"][0][0]["document"]


@pytest.mark.parametrize("body,code", [
    (b"not json", 400),
    (b"[1, 2]", 400),
    (json.dumps({"queries": "one string"}).encode(), 400),
    (json.dumps({"queries": ["a"], "topk": 0}).encode(), 400),
    (json.dumps({"queries": ["a"], "topk": MAX_TOPK + 1}).encode(), 400),
    (json.dumps({"queries": ["a"], "topk": "3"}).encode(), 400),
    (json.dumps({"queries": ["a"] * 5000}).encode(), 400),
    (b"{" + b" " * (MAX_BODY + 10) + b"}", 413),
])
def test_malformed_requests_get_4xx_and_server_lives_on(server, body, code):
    got, res = _post(server, body)
    assert got == code and "error" in res
    ok, _ = _post(server, json.dumps({"queries": ["x"], "topk": 1}).encode())
    assert ok == 200
    assert _post(server, b"{}", path="/nope")[0] == 404
