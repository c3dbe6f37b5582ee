"""LLM judge: an article, a fork of 6 judging dimensions, then a 1-10 verdict over all six judgements.

The six judgements share the instructions and the article; the verdict prompt quotes them and ends in a
regex-constrained score. Articles are written here.
"""

from __future__ import annotations

from typing import Any

import sgnb as sgl
from bench.programs.workload import Workload, require

JUDGEMENT_TOKENS = 16
SCORE_REGEX = r"(10|[1-9])"
INSTRUCTIONS = ("You are a strict but fair editor. You judge short articles written by students, one quality at "
                "a time, in one sentence each, and then give an overall score from 1 to 10.\n\n")
DIMENSIONS = [
    ("Clarity", "Is every sentence easy to understand on a first reading?"),
    ("Accuracy", "Are the facts and numbers in the article correct?"),
    ("Structure", "Does the article have a clear beginning, middle and end?"),
    ("Style", "Is the language varied, precise and pleasant to read?"),
    ("Conciseness", "Does the article avoid repetition and filler?"),
    ("Engagement", "Would a reader want to keep reading after the first lines?"),
]
ARTICLES = [
    "Bees are small insects that live in large groups called colonies. Each colony has one queen, many workers "
    "and some drones. Worker bees collect nectar from flowers and turn it into honey, which feeds the colony in "
    "winter. Bees also carry pollen from flower to flower, which helps plants make seeds and fruit. Without bees, "
    "many of the foods we eat every day would be much harder to grow.",
    "The bicycle was invented in the nineteenth century and quickly became popular in cities. It is cheap to "
    "buy, easy to repair and does not need fuel. Cycling to school or work keeps people fit and makes streets "
    "quieter and cleaner. Many cities now build separate lanes for bicycles so that riders feel safe. Some "
    "people think the bicycle is the most efficient machine ever made for moving a person.",
    "Volcanoes form where hot melted rock, called magma, rises through cracks in the Earth's crust. When the "
    "pressure becomes too high, the volcano erupts and lava, ash and gas pour out. Some eruptions are gentle and "
    "slow, while others are violent explosions. The ash can fall far away and make the soil very rich, which is "
    "why farmers often live close to volcanoes despite the danger.",
    "Libraries are more than rooms full of books. They lend films and music, offer free internet access and "
    "host clubs for readers of every age. Librarians help people find information and learn how to judge "
    "whether a source can be trusted. In many towns the library is one of the few warm, quiet places where "
    "anyone can stay for free, which makes it an important part of the community.",
    "The Moon orbits the Earth about once every twenty-seven days. It has no light of its own; we see it because "
    "it reflects sunlight. As it moves around the Earth, we see different parts of its lit side, which gives the "
    "phases from new moon to full moon. The Moon's gravity pulls on the oceans and causes the tides, which rise "
    "and fall twice a day along most coasts.",
    "Tea was first drunk in China thousands of years ago and later spread along trade routes to the rest of the "
    "world. Green, black and oolong teas all come from the same plant; the difference lies in how the leaves are "
    "dried and processed. Today tea is the second most popular drink on Earth after water, and every country "
    "seems to have its own way of preparing and serving it.",
]


def make_args(num_programs: int) -> list[dict[str, Any]]:
    return [{"article": (f"(Article {i + 1}) " if i >= len(ARTICLES) else "") + ARTICLES[i % len(ARTICLES)]}
            for i in range(num_programs)]


def _header(article: str) -> str:
    return INSTRUCTIONS + "Article:\n" + article + "\n\n"


def _ask(i: int) -> str:
    name, question = DIMENSIONS[i]
    return f"Judge only the {name.lower()} of the article. {question}\n{name} judgement: The article"


def _verdict_prompt(judgements: list[str]) -> str:
    lines = "".join(f"{name}: {j.strip()}\n" for (name, _), j in zip(DIMENSIONS, judgements))
    return "Judgements by quality:\n" + lines + "Overall score from 1 to 10: "


@sgl.function
def llm_judge(s, article: str):
    s += _header(article)
    forks = s.fork(len(DIMENSIONS))
    for i, f in enumerate(forks):
        f += _ask(i) + sgl.gen("judgement", max_tokens=JUDGEMENT_TOKENS, stop="\n")
    forks.join()
    s += _verdict_prompt([f["judgement"] for f in forks])
    s += sgl.gen("score", max_tokens=3, regex=SCORE_REGEX)


def outputs(state) -> dict[str, Any]:
    return {"judgements": list(state["judgement"]), "score": state["score"]}


def run_hf(hf, article: str) -> dict[str, Any]:
    header = _header(article)
    judgements = [hf.gen(header + _ask(i), max_tokens=JUDGEMENT_TOKENS, stop="\n") for i in range(len(DIMENSIONS))]
    score = hf.gen(header + _verdict_prompt(judgements), max_tokens=3, regex=SCORE_REGEX)
    return {"judgements": judgements, "score": score}


def validate(kwargs: dict[str, Any], out: dict[str, Any]) -> None:
    require(len(out["judgements"]) == len(DIMENSIONS), f"expected {len(DIMENSIONS)} judgements")
    require(all(isinstance(j, str) and "\n" not in j for j in out["judgements"]), "a judgement is not one line")
    require(out["score"] in [str(k) for k in range(1, 11)], "the score is not an integer from 1 to 10")


WORKLOAD = Workload(
    name="llm_judge", title="LLM judge (fork 6 + verdict)", program=llm_judge, make_args=make_args,
    outputs=outputs, run_hf=run_hf, validate=validate, num_programs=4, num_hf_programs=1, regexes=(SCORE_REGEX,),
)
