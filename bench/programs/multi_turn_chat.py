"""Multi-turn chat: several user turns per conversation, each answered with the whole conversation as context.

Every turn's prompt extends the previous turn's prompt and answer, so from the second turn on the radix cache
holds all but the new user message; all conversations also share the chat template's system prompt.
Conversations are written here and rendered with the model's own chat template.
"""

from __future__ import annotations

from typing import Any

import sgnb as sgl
from bench.programs.workload import Workload, require

ANSWER_TOKENS = 10
NUM_TURNS = 4
FOLLOW_UP = " Please keep it short and practical, and tell me if there is a common mistake I should avoid."
# (background the user gives in the first turn, the questions of the turns)
CONVERSATIONS = [
    ("I have never baked bread before, but I bought flour, yeast and salt yesterday. My oven is small and old, and "
     "I only have a few hours on Saturday afternoon. My family likes soft white bread more than crusty loaves.",
     ["What else do I need before I start?", "How long should I knead the dough?",
      "My kitchen is quite cold. Will the dough still rise?", "How do I know when the loaf is done?"]),
    ("Next weekend I am hiking in the mountains with two friends. The trail is about eighteen kilometres with a steep "
     "climb in the middle, and the forecast says it may rain in the afternoon. None of us has done a hike this long.",
     ["What should I pack?", "What if the weather turns bad on the way?",
      "How much water should I carry for a day?", "How do I walk downhill without sore knees?"]),
    ("Two weeks ago I adopted a three-year-old cat from a shelter. She was found as a stray, she is a bit thin, and "
     "she gets scared by loud noises. I live alone in a small flat on the second floor with a balcony.",
     ["How do I help her settle in?", "She hides under the bed all day. Is that normal?",
      "What kind of food is best for her?", "How often should I take her to the vet?"]),
    ("I am forty and I want to start running. I walk to work every day but I have not done any sport for years, and "
     "after five minutes of jogging I am out of breath. There is a flat park with a two kilometre loop near my home.",
     ["Where do I begin?", "How many times a week should I run?",
      "My legs hurt the day after. Should I rest?", "What shoes are good for beginners?"]),
    ("We have a small back garden of about twenty square metres that gets sun in the morning only. The soil is heavy "
     "clay, and I can spend maybe two hours a week on it. My children would like to grow something they can eat.",
     ["Can you help me plan a small vegetable garden?", "Which vegetables are easiest for a beginner?",
      "How often should I water them?", "What can I do about slugs eating the leaves?"]),
    ("Next Thursday I have to give a ten-minute talk to about thirty colleagues about a project I led this year. I "
     "know the subject well, but I get very nervous in front of groups and I tend to speak too fast.",
     ["How should I prepare?", "How do I stop my voice from shaking?",
      "Should I use slides or just speak?", "How do I end the talk well?"]),
    ("For my birthday I got an acoustic guitar. I have never played an instrument, I cannot read music, and I can "
     "practise about half an hour in the evenings. I would love to play a few songs at a family party in the summer.",
     ["Is it hard to learn?", "How long should I practise each day?",
      "My fingertips hurt when I press the strings. What should I do?", "Which songs are good to learn first?"]),
    ("Next month we move from a one-bedroom flat to a bigger one across town. We have a lot of books, some fragile "
     "dishes from my grandmother, a piano, and a toddler. We both work full time until two days before the move.",
     ["How do I organise the move?", "How do I pack the fragile dishes?",
      "Should I hire movers or do it myself?", "What should I do on the first day in the new flat?"]),
]


def make_args(num_programs: int) -> list[dict[str, Any]]:
    args = []
    for i in range(num_programs):
        background, questions = CONVERSATIONS[i % len(CONVERSATIONS)]
        if i >= len(CONVERSATIONS):
            background = f"(Conversation {i + 1}) " + background        # distinct conversations at large scales
        turns = [q + FOLLOW_UP for q in questions[:NUM_TURNS]]
        turns[0] = background + " " + turns[0]
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
    make_args=make_args, outputs=outputs, run_hf=run_hf, validate=validate, num_programs=6, num_hf_programs=2,
    paper_hit_rate="50-57%",
)
