"""The paper's reported numbers (Table 1, Qwen2.5 3B -> 0.5B, EM), shown beside ours and always labelled as
the paper's. Source: the authors' project page and model card; never used as a result."""

PAPER_SETS = ["nq", "triviaqa", "popqa", "hotpotqa", "2wiki", "musique", "bamboogle"]

PAPER_TABLE1 = {  # method: [NQ, TriviaQA, PopQA, HotpotQA, 2Wiki, MuSiQue, Bamboogle]
    "student": [0.004, 0.006, 0.007, 0.007, 0.015, 0.000, 0.000],
    "teacher": [0.365, 0.569, 0.393, 0.340, 0.368, 0.135, 0.298],
    "ppo": [0.306, 0.444, 0.379, 0.205, 0.218, 0.041, 0.073],
    "gkd": [0.266, 0.408, 0.358, 0.216, 0.217, 0.055, 0.161],
    "seqkd": [0.331, 0.416, 0.364, 0.283, 0.273, 0.089, 0.169],
    "kd": [0.331, 0.431, 0.373, 0.286, 0.284, 0.091, 0.290],
    "distillm": [0.333, 0.442, 0.373, 0.288, 0.270, 0.095, 0.209],
    "taid": [0.325, 0.427, 0.365, 0.290, 0.270, 0.079, 0.218],
    "dgpo": [0.378, 0.481, 0.402, 0.342, 0.303, 0.120, 0.274],
}
PAPER_AVG = {"student": 0.006, "teacher": 0.353, "ppo": 0.238, "gkd": 0.240, "seqkd": 0.275, "kd": 0.298,
             "distillm": 0.287, "taid": 0.282, "dgpo": 0.329}
