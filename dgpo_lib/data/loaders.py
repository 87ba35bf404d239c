"""Loaders for the FlashRAG QA schema and the corpus schema, with errors that name file, line and field."""
from __future__ import annotations

import gzip
import json
import random
import zlib
from dataclasses import dataclass, field
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]

# Display names of the seven benchmarks; *_ctx are the subsets whose gold passages are in the CPU corpus.
DISPLAY = {"nq": "NQ", "triviaqa": "TriviaQA", "popqa": "PopQA", "hotpotqa": "HotpotQA", "2wiki": "2Wiki",
           "musique": "MuSiQue", "bamboogle": "Bamboogle"}


def display_name(name: str) -> str:
    base = name.removesuffix("_ctx")
    return DISPLAY.get(base, name)


class DataError(ValueError):
    """Malformed input data; the message names the file, line and field."""


@dataclass
class QAExample:
    id: str
    question: str
    golden_answers: list[str]
    dataset: str = ""
    metadata: dict = field(default_factory=dict)


@dataclass
class Passage:
    id: str
    title: str
    text: str

    @property
    def contents(self) -> str:
        return f'"{self.title}"\n{self.text}'


def _lines_of(fh, path: Path):
    """(line number, bytes) of an open file; a broken or truncated gzip file is a DataError naming it."""
    lineno = 0
    try:
        for lineno, raw in enumerate(fh, 1):
            yield lineno, raw
    except (EOFError, OSError, zlib.error) as e:  # gzip.BadGzipFile is an OSError
        what = "truncated (the gzip stream ends early)" if isinstance(e, EOFError) else f"not a readable gzip file ({e})"
        raise DataError(f"{path}: {what}" + (f", after line {lineno}" if lineno else "")) from None


def _iter_jsonl(path: Path):
    try:
        fh = gzip.open(path, "rb") if path.suffix == ".gz" else path.open("rb")
    except FileNotFoundError:
        hint = (" (python -m dgpo_lib.data.paper --out data/paper fetches the paper's data; python -m "
                "dgpo_lib.pipeline.preflight lists everything missing)") if "paper" in str(path) else ""
        raise DataError(f"{path}: file does not exist{hint}") from None
    with fh:
        for lineno, raw in _lines_of(fh, path):
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as e:
                raise DataError(f"{path}:{lineno}: not valid UTF-8 ({e.reason} at byte {e.start})") from None
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as e:
                raise DataError(f"{path}:{lineno}: broken JSON ({e.msg} at column {e.colno})") from None
            if not isinstance(obj, dict):
                raise DataError(f"{path}:{lineno}: expected a JSON object, got {type(obj).__name__}")
            yield lineno, obj


def _require(obj: dict, key: str, typ, path: Path, lineno: int):
    if key not in obj:
        raise DataError(f"{path}:{lineno}: missing field '{key}'")
    val = obj[key]
    if not isinstance(val, typ) or isinstance(val, bool):
        want = typ.__name__ if isinstance(typ, type) else "/".join(t.__name__ for t in typ)
        raise DataError(f"{path}:{lineno}: field '{key}' must be {want}, got {type(val).__name__}")
    return val


def load_qa(path: str | Path, dataset: str | None = None) -> list[QAExample]:
    """Read a FlashRAG QA jsonl (`id`, `question`, `golden_answers` list[str], optional `metadata`)."""
    path = Path(path)
    out = []
    for lineno, obj in _iter_jsonl(path):
        qid = _require(obj, "id", (str, int), path, lineno)
        q = _require(obj, "question", str, path, lineno)
        if not q.strip():
            raise DataError(f"{path}:{lineno}: field 'question' is empty")
        ans = _require(obj, "golden_answers", list, path, lineno)
        if not ans or not all(isinstance(a, str) for a in ans):
            raise DataError(f"{path}:{lineno}: field 'golden_answers' must be a non-empty list of strings")
        meta = obj.get("metadata") or {}
        if not isinstance(meta, dict):
            raise DataError(f"{path}:{lineno}: field 'metadata' must be an object")
        out.append(QAExample(str(qid), q, ans, dataset or path.stem, meta))
    if not out:
        raise DataError(f"{path}: no examples")
    return out


def load_corpus(path: str | Path, limit: int | None = None) -> list[Passage]:
    """Read a corpus jsonl (`id`, `contents` = '"Title"\\ntext', the wiki-18 layout)."""
    path = Path(path)
    out = []
    for lineno, obj in _iter_jsonl(path):
        pid = _require(obj, "id", (str, int), path, lineno)
        contents = _require(obj, "contents", str, path, lineno)
        title, sep, text = contents.partition("\n")
        if not sep or not text.strip():
            raise DataError(f"{path}:{lineno}: field 'contents' must be 'Title\\ntext'")
        out.append(Passage(str(pid), title.strip().strip('"'), text.strip()))
        if limit is not None and len(out) >= limit:
            break
    if not out:
        raise DataError(f"{path}: no passages")
    return out


def repo_path(p: str | Path) -> Path:
    """A configured path (run_root, ...): absolute as given, else relative to the repository."""
    p = Path(p)
    return p if p.is_absolute() else REPO_ROOT / p


def shown_path(p: str | Path) -> str:
    """A path as logs show it: relative to the repository when inside it (no machine-specific prefix)."""
    p = Path(p)
    try:
        return str(p.relative_to(REPO_ROOT))
    except ValueError:
        return str(p)


def recorded_path(p: str | Path) -> str:
    """A path as committed files record it: relative to the repository when inside it, else only its folder's name
    (another machine's folders, a home folder among them, say nothing to a reader and do not belong in the repo)."""
    shown = shown_path(p)
    return Path(shown).name if Path(shown).is_absolute() else shown


def resolve(data_dir: str, rel: str) -> Path:
    p = Path(rel)
    if p.is_absolute():
        return p
    d = Path(data_dir)
    if not d.is_absolute():
        d = REPO_ROOT / d
    return d / p


def qa_path(data_dir: str, name: str) -> Path:
    return resolve(data_dir, f"qa/{name}.jsonl")


def seeded_subset(rows: list, n: int | None, seed: int, salt: str = "") -> list:
    """A fixed random subset (same for every method); order is the file order for readability."""
    if n is None or n >= len(rows):
        return list(rows)
    rng = random.Random(f"{seed}:{salt}")
    idx = sorted(rng.sample(range(len(rows)), n))
    return [rows[i] for i in idx]


def eval_subset(cfg, name: str, rows: list[QAExample] | None = None) -> list[QAExample]:
    d = cfg.data
    rows = load_qa(qa_path(d.data_dir, name), name) if rows is None else rows
    return seeded_subset(rows, d.n_eval_per_set.get(name, d.n_eval), d.split_seed, name)


def load_eval_sets(cfg) -> dict[str, list[QAExample]]:
    return {name: eval_subset(cfg, name) for name in cfg.data.eval_sets}


def load_train_set(cfg, name: str) -> list[QAExample]:
    """One training set. `X:rest` is benchmark X minus its evaluation subset (held out by question id), so the
    in-corpus multi-hop sets can train the teacher without a single evaluation question."""
    d = cfg.data
    base, _, part = name.partition(":")
    if part not in ("", "rest"):
        raise ValueError(f"data.train_sets: {name!r}: the only suffix is ':rest'")
    rows = load_qa(qa_path(d.data_dir, base), base)
    if part == "rest":
        held = {q.id for q in eval_subset(cfg, base, rows)} if base in d.eval_sets else set()
        rows = [q for q in rows if q.id not in held]
    return seeded_subset(rows, d.n_train_per_set.get(name), d.split_seed, f"train:{name}")


def question_key(question: str) -> str:
    """Normalised question text: how the same question is recognised across files whose ids differ."""
    from dgpo_lib.env.reward import normalize_answer
    return normalize_answer(question)


def _train_and_val(cfg) -> tuple[list[QAExample], list[QAExample]]:
    """All training questions, shuffled with the split seed, less any whose text is an evaluation question's;
    the first `n_val` are the validation slice, the rest (capped at `n_train`) the training questions."""
    d = cfg.data
    held = {question_key(q.question) for rows in load_eval_sets(cfg).values() for q in rows}
    rows: list[QAExample] = []
    for name in d.train_sets:
        rows += [q for q in load_train_set(cfg, name) if question_key(q.question) not in held]
    random.Random(d.split_seed).shuffle(rows)
    val, train = rows[:d.n_val], rows[d.n_val:]
    return (train if d.n_train is None else train[: d.n_train]), val


def load_train_questions(cfg) -> list[QAExample]:
    return _train_and_val(cfg)[0]


def load_val_questions(cfg) -> list[QAExample]:
    """The validation slice of training questions: learning curves and checkpoint choice, never training."""
    return _train_and_val(cfg)[1]


def load_cfg_corpus(cfg) -> list[Passage]:
    """The configured corpus. With `corpus_limit` (smoke), the first N passages plus the gold passages of the
    configured eval and training questions, so retrieval stays meaningful on a small slice."""
    path = resolve(cfg.data.data_dir, cfg.data.corpus)
    if cfg.data.corpus_limit is None:
        return load_corpus(path)
    passages = load_corpus(path)
    gold = set()
    for rows in [*load_eval_sets(cfg).values(), load_train_questions(cfg)]:
        for q in rows:
            gold.update(q.metadata.get("supporting_ids") or [])
    return [p for i, p in enumerate(passages) if i < cfg.data.corpus_limit or p.id in gold]
