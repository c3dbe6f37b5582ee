"""Multi-turn chat: several user turns per conversation, each answered with the whole conversation as context.

Every turn's prompt extends the previous turn's prompt and answer, so from the second turn on the radix cache
holds all but the new user message; all conversations also share the chat template's system prompt.
Conversations are written here and rendered with the model's own chat template.
"""

from __future__ import annotations

from typing import Any

import sgnb as sgl
from bench.programs.workload import Workload, require

ANSWER_TOKENS = 16
NUM_TURNS = 4
CONVERSATIONS = [
    ["I want to bake bread at home for the first time. What do I need?", "How long should I knead the dough?",
     "My kitchen is quite cold. Will the dough still rise?", "How do I know when the loaf is done?"],
    ["I am planning a weekend hike in the mountains. What should I pack?", "What if the weather turns bad?",
     "How much water should I carry for a day?", "Any tips for walking downhill without sore knees?"],
    ["I just adopted a cat. How do I help her settle in?", "She hides under the bed all day. Is that normal?",
     "What kind of food is best for an adult cat?", "How often should I take her to the vet?"],
    ["I want to start running but I get tired quickly. Where do I begin?", "How many times a week should I run?",
     "My legs hurt the day after. Should I rest?", "What shoes are good for beginners?"],
    ["Can you help me plan a small vegetable garden?", "Which vegetables are easiest for a beginner?",
     "How often should I water them?", "What can I do about slugs eating the leaves?"],
    ["I need to give a short talk at work next week. How do I prepare?", "How do I stop my voice from shaking?",
     "Should I use slides or just speak?", "How do I end the talk well?"],
    ["I would like to learn to play the guitar. Is it hard?", "How long should I practise each day?",
     "My fingertips hurt when I press the strings. What should I do?", "Which songs are good to learn first?"],
    ["We are moving to a new flat next month. How do I organise the move?", "How do I pack fragile dishes?",
     "Should I hire movers or do it myself?", "What should I do on the first day in the new flat?"],
]


def make_args(num_programs: int) -> list[dict[str, Any]]:
    args = []
    for i in range(num_programs):
        turns = list(CONVERSATIONS[i % len(CONVERSATIONS)][:NUM_TURNS])
        if i >= len(CONVERSATIONS):
            turns[0] = f"(Conversation {i + 1}) " + turns[0]           # distinct conversations at large scales
        args.append({"turns": turns})
    return args


@sgl.function
def multi_turn_chat(s, turns: list[str]):
    for i, question in enumerate(turns):
        s += sgl.user(question)
        s += sgl.assistant(sgl.gen(f"answer_{i}", max_tokens=ANSWER_TOKENS))


def outputs(state) -> dict[str, Any]:
    return {"answers": [m["content"] for m in state.messages() if m["role"] == "assistant"]}


def run_hf(hf, turns: list[str]) -> dict[str, Any]:
    messages: list[dict[str, str]] = []
    answers = []
    for question in turns:
        messages.append({"role": "user", "content": question})
        answer = hf.gen(hf.chat_prompt(messages), max_tokens=ANSWER_TOKENS)
        messages.append({"role": "assistant", "content": answer})
        answers.append(answer)
    return {"answers": answers}


def validate(kwargs: dict[str, Any], out: dict[str, Any]) -> None:
    require(len(out["answers"]) == len(kwargs["turns"]), "expected one assistant answer per user turn")
    require(all(isinstance(a, str) for a in out["answers"]), "an answer is not a string")


WORKLOAD = Workload(
    name="multi_turn_chat", title=f"multi-turn chat ({NUM_TURNS} turns)", program=multi_turn_chat,
    make_args=make_args, outputs=outputs, run_hf=run_hf, validate=validate, num_programs=8, num_hf_programs=2,
    paper_hit_rate="50-57%",
)
