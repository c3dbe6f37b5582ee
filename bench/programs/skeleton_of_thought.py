"""Skeleton-of-thought: generate a 3-point skeleton, then fork and expand every point in parallel.

The skeleton is generated point by point (each gen extends the previous one's prompt), then the three
expansions share the whole skeleton as their prefix. Topics are written here.
"""

from __future__ import annotations

from typing import Any

import sgnb as sgl
from bench.programs.workload import Workload, require

NUM_POINTS = 3
POINT_TOKENS = 8
EXPANSION_TOKENS = 24
INSTRUCTIONS = ("You are a helpful assistant who gives short, practical advice. Answer in two stages: first a "
                f"skeleton of {NUM_POINTS} points of a few words each, then one short paragraph per point.\n")
TOPICS = ["staying focused while studying", "keeping houseplants alive", "saving money on groceries",
          "sleeping better", "learning a new language", "running a first 5 km race", "keeping a tidy desk",
          "cooking for a large family", "preparing for a job interview", "taking better photos with a phone",
          "planning a long train journey", "starting a vegetable garden", "writing clear emails",
          "looking after a new puppy", "staying warm in winter", "reading more books"]


def make_args(num_programs: int) -> list[dict[str, Any]]:
    return [{"topic": TOPICS[i % len(TOPICS)] + ("" if i < len(TOPICS) else f" (case {i})")}
            for i in range(num_programs)]


def _skeleton_header(topic: str) -> str:
    return INSTRUCTIONS + f"Question: How can I get better at {topic}?\nSkeleton:\n"


def _expand_request(i: int, point: str) -> str:
    return f"\nExpanding point {i + 1}:{point}. In short,"


@sgl.function
def skeleton_of_thought(s, topic: str):
    s += _skeleton_header(topic)
    for i in range(NUM_POINTS):
        s += f"{i + 1}." + sgl.gen(f"point_{i + 1}", max_tokens=POINT_TOKENS, stop="\n") + "\n"
    forks = s.fork(NUM_POINTS)
    for i, f in enumerate(forks):
        f += _expand_request(i, s[f"point_{i + 1}"]) + sgl.gen("expansion", max_tokens=EXPANSION_TOKENS, stop="\n")
    forks.join()


def outputs(state) -> dict[str, Any]:
    return {"points": [state[f"point_{i + 1}"] for i in range(NUM_POINTS)], "expansions": list(state["expansion"])}


def run_hf(hf, topic: str) -> dict[str, Any]:
    text = _skeleton_header(topic)
    points = []
    for i in range(NUM_POINTS):
        text += f"{i + 1}."
        point = hf.gen(text, max_tokens=POINT_TOKENS, stop="\n")
        points.append(point)
        text += point + "\n"
    expansions = [hf.gen(text + _expand_request(i, points[i]), max_tokens=EXPANSION_TOKENS, stop="\n")
                  for i in range(NUM_POINTS)]
    return {"points": points, "expansions": expansions}


def validate(kwargs: dict[str, Any], out: dict[str, Any]) -> None:
    require(len(out["points"]) == NUM_POINTS, f"expected {NUM_POINTS} skeleton points")
    require(all(isinstance(p, str) and "\n" not in p for p in out["points"]), "a point is not one line of text")
    require(len(out["expansions"]) == NUM_POINTS and all(isinstance(e, str) and "\n" not in e
                                                         for e in out["expansions"]),
            f"expected {NUM_POINTS} expansions")


WORKLOAD = Workload(
    name="skeleton_of_thought", title="skeleton-of-thought (fork 3)", program=skeleton_of_thought,
    make_args=make_args, outputs=outputs, run_hf=run_hf, validate=validate, num_programs=4, num_hf_programs=1,
)
