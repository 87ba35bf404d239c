"""Every method of the paper's results table and of its ablations, in one table (no torch here).

A row says what trains the method (a stage kind), which row's model it starts from, its KD method (the loss and
where its batches come from) or its RL variant (algorithm, reference model, which trajectories pay the KL), and
the config keys its training reads beyond the common ones. The trainers (`train/kd.py`, `train/rl.py`), the
stage graph (`pipeline/keys.py`, `pipeline/stages.py`) and the book read names, labels and settings from here.

Adding a KD method is one `KDMethod` row below plus its per-token loss in `train/losses.py`:

    "my_kd": Method("my_kd", "My KD", "kd", "student", kd=KDMethod("my_kd", "my_divergence",
                                                                    ("student", "teacher", "kd.my_temp")))
"""
from __future__ import annotations

from dataclasses import dataclass, replace

# What a KD loss can be given, besides `kd.` config keys: the student's and the teacher's logits at the generated
# tokens, the generated token ids, TAID's interpolation weight t at this step.
LOSS_INPUTS = ("student", "teacher", "targets", "taid_t")
KD_DATA = ("teacher", "mixed", "adaptive")


@dataclass(frozen=True)
class KDMethod:
    """A KD method: its per-token loss (a function of `dgpo_lib.train.losses`, called with `args` in order) and
    where its batches come from:

    - `teacher`: the teacher's correct trajectories (TGO) only;
    - `mixed` (GKD, TAID's "mixed" sampler): at a share `on_policy` of the steps fresh greedy student rollouts join
      a replay buffer and the batch is drawn from it, otherwise a TGO batch;
    - `adaptive` (DistiLLM): its adaptive schedule over fresh, replayed and TGO batches, driven by the loss on
      held-out teacher text.

    `name` seeds the method's random streams (which batch, which source), so the on-policy GKD ablations, which
    are GKD with another share, keep GKD's name."""
    name: str
    loss: str
    args: tuple[str, ...]
    data: str = "teacher"
    on_policy: str | float = "kd.gkd_lambda"  # `mixed`: share of on-policy steps, a config key or a number

    def __post_init__(self):
        if self.data not in KD_DATA:
            raise ValueError(f"KDMethod {self.name}: data must be one of {', '.join(KD_DATA)}, not {self.data!r}")
        bad = [a for a in self.args if a not in LOSS_INPUTS and not a.startswith("kd.")]
        if bad:
            raise ValueError(f"KDMethod {self.name}: unknown loss inputs {bad} (known: {', '.join(LOSS_INPUTS)}, kd.<key>)")

    @property
    def needs_teacher(self) -> bool:
        """Scores its batches with the teacher's logits (every method but SeqKD)."""
        return "teacher" in self.args

    @property
    def interpolated(self) -> bool:
        """Follows TAID's schedule of the interpolation weight t."""
        return "taid_t" in self.args

    @property
    def keys(self) -> tuple[str, ...]:
        """The `kd.` config keys this method reads beyond the common budget."""
        own = [a for a in self.args if a.startswith("kd.")]
        if self.data == "mixed" and isinstance(self.on_policy, str):
            own.append(self.on_policy)
        if self.data in ("mixed", "adaptive"):
            own.append("kd.replay_capacity")
        if self.data == "adaptive":
            own += ["kd.distillm_val_seqs", "kd.distillm_val_every"]
        if self.interpolated:
            own += ["kd.taid_t_start", "kd.taid_t_end", "kd.taid_alpha", "kd.taid_beta"]
        return tuple(own)


@dataclass(frozen=True)
class RLVariant:
    """An RL variant: the algorithm, the model its KL pulls towards and which trajectories pay that KL. DGPO = PPO
    with the teacher as reference and the KL on wrong trajectories only (started from the KD cold start)."""
    algo: str = "ppo"           # ppo (critic + GAE) or grpo (group-normalised outcome advantages)
    reference: str = "teacher"  # teacher (DGPO) or initial (Search-R1's PPO: the frozen starting policy)
    kl_mode: str = "selective"  # selective (EM = 0 only), always, or none
    beta: float | None = None   # the KL coefficient; None = rl.beta

    def with_beta(self, default: float) -> "RLVariant":
        return self if self.beta is not None else replace(self, beta=default)


STAGE_KINDS = ("student", "teacher", "kd", "rl")


@dataclass(frozen=True)
class Method:
    """One row of the results table (`table=True`) or of the ablations."""
    name: str
    label: str
    stage: str               # the kind of stage that trains it: student, teacher, kd or rl
    start: str | None = None  # the row whose model it starts from
    kd: KDMethod | None = None
    rl: RLVariant | None = None
    table: bool = True
    paper_row: str | None = None  # the paper's Table 1 row this one stands in for when it is not one itself

    @property
    def table_row(self) -> str | None:
        """The paper's Table 1 row this row is, or stands in for (a baseline started as its own paper starts it)."""
        return self.name if self.table else self.paper_row

    @property
    def stage_name(self) -> str:
        """The stage that trains this row's model (`kd_taid`, `rl_dgpo`; `student`, `teacher`)."""
        return self.stage if self.stage in ("student", "teacher") else f"{self.stage}_{self.name}"


JSD = KDMethod("gkd", "generalized_jsd",
               ("student", "teacher", "kd.gkd_beta"), data="mixed")
SEQKD = KDMethod("seqkd", "token_nll", ("student", "targets"))
FORWARD_KL = KDMethod("kd", "forward_kl", ("student", "teacher"))
SKEW_KL = KDMethod("distillm", "skew_reverse_kl",
                   ("student", "teacher", "kd.skew_alpha"),
                   data="adaptive")
TAID = KDMethod("taid", "taid_loss", ("student", "teacher", "taid_t"))
# DistiLLM's own choice for small students: skew forward KL
SKEW_FKL = KDMethod("distillm_sfkl", "skew_forward_kl",
                    ("student", "teacher", "kd.skew_alpha"),
                    data="adaptive")
# every batch the student's own generations, scored by the teacher
ON_POLICY_JSD = replace(JSD, on_policy=1.0)

# Search-R1's PPO keeps its own KL coefficient (its kl_coef 0.001): `rl.beta` is DGPO's, chosen on validation
SEARCH_R1_PPO = RLVariant("ppo", "initial", "always", beta=1e-3)
DGPO = RLVariant("ppo", "teacher", "selective")

METHODS: dict[str, Method] = {m.name: m for m in (
    # the paper's Table 1, in its order:
    # name, label, stage kind, start, then its KD method or RL variant
    Method("student", "Student (no training)", "student"),
    Method("teacher", "Teacher", "teacher"),
    Method("ppo", "PPO", "rl", "student", rl=SEARCH_R1_PPO),
    Method("gkd", "GKD", "kd", "student", kd=JSD),
    Method("seqkd", "SeqKD", "kd", "student", kd=SEQKD),
    Method("kd", "KD", "kd", "student", kd=FORWARD_KL),  # cold start
    Method("distillm", "DistiLLM", "kd", "student", kd=SKEW_KL),
    Method("taid", "TAID", "kd", "student", kd=TAID),
    Method("dgpo", "DGPO", "rl", "kd", rl=DGPO),
    # ablations (the paper's Figures 4 and 5)
    Method("dgpo_no_coldstart", "DGPO w/o cold start", "rl", "student",
           rl=DGPO, table=False),
    Method("dgpo_kl_always", "DGPO, KL on every trajectory", "rl", "kd",
           rl=replace(DGPO, kl_mode="always"), table=False),
    Method("dgpo_grpo", "DGPO with GRPO instead of PPO", "rl", "kd",
           rl=replace(DGPO, algo="grpo"), table=False),
    Method("gkd_onpolicy", "GKD (teacher guidance only)", "kd",
           "student", kd=ON_POLICY_JSD, table=False),
    Method("kd_then_gkd", "KD -> GKD", "kd", "kd", kd=ON_POLICY_JSD,
           table=False),
    # DistiLLM with skew forward KL (the table's row: skew reverse)
    Method("distillm_sfkl", "DistiLLM, skew forward KL", "kd",
           "student", kd=SKEW_FKL, table=False),
    # GKD and DistiLLM as their own papers and code run them: from a student supervised fine-tuned on the task
    # (DistiLLM's scripts/*/init; GKD's "initial student"); here the SeqKD row, SFT on the TGO trajectories.
    # They stand in for the table's GKD and DistiLLM rows in a preset whose student cannot write the protocol.
    Method("gkd_sft", "GKD (from the SeqKD student)", "kd", "seqkd", kd=JSD,
           table=False, paper_row="gkd"),
    Method("distillm_sft", "DistiLLM (from the SeqKD student)", "kd", "seqkd",
           kd=SKEW_KL, table=False, paper_row="distillm"),
)}
BETA_PREFIX = "dgpo_beta_"  # `dgpo_beta_<x>`: DGPO with beta = x (the paper's beta sweep)


def method(name: str) -> Method:
    """The row called `name` (an `@final` / `@best_val` suffix is ignored), or `dgpo_beta_<x>`."""
    name = name.partition("@")[0]
    if name in METHODS:
        return METHODS[name]
    if name.startswith(BETA_PREFIX):
        try:
            beta = float(name.removeprefix(BETA_PREFIX))
        except ValueError:
            raise ValueError(f"row {name!r}: {BETA_PREFIX}<x> needs a number x") from None
        return replace(METHODS["dgpo"], name=name, label=f"DGPO, beta = {name.removeprefix(BETA_PREFIX)}",
                       rl=replace(DGPO, beta=beta), table=False)
    raise ValueError(f"unknown method {name!r} (known: {', '.join(METHODS)}, {BETA_PREFIX}<x>)")


def names(stage: str | None = None, table: bool | None = None) -> tuple[str, ...]:
    """Row names, in the table's order, trained by `stage` (kd, rl, ...) and in the table or not."""
    return tuple(n for n, m in METHODS.items()
                 if (stage is None or m.stage == stage) and (table is None or m.table == table))


KD_ROWS = names("kd", table=True)            # the paper's KD baselines, in its order
KD_ABLATIONS = names("kd", table=False)      # the other KD rows (on-policy GKD, other starts or losses)
RL_ROWS = names("rl")


def kd_baselines(rows) -> list[str]:
    """The KD baselines among `rows`, in their order: KD-trained rows that are, or stand in for, a row of the
    paper's table (not the on-policy GKD ablations)."""
    return [r for r in rows if paper_row(r) and METHODS[paper_row(r)].stage == "kd"]


def paper_row(row: str) -> str | None:
    """The paper's Table 1 row that `row` is or stands in for (`gkd_sft` -> `gkd`), None for an ablation."""
    try:
        return method(row).table_row
    except ValueError:
        return None


def row_label(row: str) -> str:
    """A results row's name in tables; an RL row pinned to a checkpoint (`dgpo@final`) says which."""
    base, _, ckpt = row.partition("@")
    try:
        label = method(base).label
    except ValueError:
        label = base
    return f"{label} ({'last step' if ckpt == 'final' else 'selected on validation'})" if ckpt else label
