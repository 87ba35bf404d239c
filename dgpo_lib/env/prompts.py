"""The Search-R1 prompt (verbatim) and the environment's fixed messages."""
from __future__ import annotations

SEARCH_R1_TEMPLATE = (
    "Answer the given question. You must conduct reasoning inside <think> and </think> first every time you get "
    "new information. After reasoning, if you find you lack some knowledge, you can call a search engine by "
    "<search> query </search> and it will return the top searched results between <information> and "
    "</information>. You can search as many times as your want. If you find no further external knowledge needed, "
    "you can directly provide the answer inside <answer> and </answer>, without detailed illustrations. "
    "For example, <answer> Beijing </answer>. Question: {question}\n"
)

INVALID_ACTION = (
    "\nMy previous action is invalid. If I want to search, I should put the query between <search> and </search>. "
    "If I want to give the final answer, I should put the answer between <answer> and </answer>. Let me try again.\n"
)

# One worked trajectory for models that only follow the protocol when shown it (SmolLM2-135M writes no
# <search> tag from the instruction alone). Its passage is a real wiki-18 style passage; it is in the prompt, so it is
# masked from every loss like any prompt token.
FEW_SHOT_EXAMPLE = (
    "Question: Which country is the Eiffel Tower in?\n"
    "<think> I need to find where the Eiffel Tower is. </think>\n"
    "<search> Eiffel Tower location </search>\n\n"
    "<information>Doc 1(Title: \"Eiffel Tower\") The Eiffel Tower is a wrought-iron lattice tower on the Champ de "
    "Mars in Paris, France.\n</information>\n\n"
    "<think> The Eiffel Tower is in Paris, France. </think>\n"
    "<answer> France </answer>\n\n"
)

STOP_STRINGS = ("</search>", "</answer>")


def clean_question(q: str) -> str:
    q = q.strip()
    return q if q.endswith("?") else q + "?"


def build_prompt(question: str, tokenizer=None, chat_template: bool = False, few_shot: bool = False) -> str:
    """The text the model continues from. With `chat_template` the instruction is one user turn."""
    body = SEARCH_R1_TEMPLATE.format(question=clean_question(question))
    if few_shot:
        body = SEARCH_R1_TEMPLATE.split(" Question: ")[0] + "\n\nExample:\n" + FEW_SHOT_EXAMPLE + \
            "Now the real question.\nQuestion: " + clean_question(question) + "\n"
    if chat_template:
        if tokenizer is None or not getattr(tokenizer, "chat_template", None):
            raise ValueError("chat_template=True needs a tokenizer with a chat template")
        return tokenizer.apply_chat_template([{"role": "user", "content": body}], tokenize=False,
                                             add_generation_prompt=True)
    return body


def format_docs(passages) -> str:
    """Search-R1 `_passages2string`: `Doc i(Title: {title}) {text}` one per line, where the title is the first
    line of `contents` and keeps its quotes, exactly as Search-R1 prints wiki-18 passages."""
    return "".join(f"Doc {i + 1}(Title: {p.contents.partition(chr(10))[0]}) {p.text}\n" for i, p in enumerate(passages))


def information_block(passages) -> str:
    return "\n\n<information>" + format_docs(passages).strip() + "</information>\n\n"
