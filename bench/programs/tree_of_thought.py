"""Tree-of-thought: a question, 3 forked plans, each forked into 3 short solution attempts (3 x 3 leaves).

Every leaf extends its plan's prompt, which extends the question's: the interpreter commits each shared
prefix once before the children run, so the leaves only prefill their own few tokens. Problems are synthetic.
"""

from __future__ import annotations

import random
from typing import Any

import sgnb as sgl
from bench.programs.workload import Workload, require

INSTRUCTIONS = ("You solve arithmetic word problems. First propose a plan in one short sentence, then carry it "
                "out with the real numbers in one line, and finish with the final number.\n")
# each branch's own lead-in: the text the model continues (a 135M model needs one to write a full line)
PLAN_LEADS = ["Plan 1 (work step by step): I will", "Plan 2 (write one equation): First,",
              "Plan 3 (start from the total): To solve this, I will"]
STEP_LEADS = ["Solution (compute directly): We have", "Solution (with the real numbers):",
              "Solution (check the result): The answer is"]
PLAN_TOKENS = 12
STEP_TOKENS = 16

ITEMS = [("apples", "baskets"), ("books", "shelves"), ("eggs", "cartons"), ("pencils", "boxes"),
         ("chairs", "rows"), ("coins", "jars"), ("stamps", "albums"), ("shells", "buckets")]
NAMES = ["Ana", "Ben", "Chloe", "Dmitri", "Emeka", "Fatima", "Goran", "Hana", "Ivan", "Jia"]


def make_args(num_programs: int) -> list[dict[str, Any]]:
    args = []
    for i in range(num_programs):
        rng = random.Random(f"tot/{i}")
        thing, holder = ITEMS[i % len(ITEMS)]
        name = NAMES[(i * 3) % len(NAMES)]
        a, b, c = rng.randint(3, 9), rng.randint(4, 12), rng.randint(2, 15)
        question = (f"{name} has {a} {holder} with {b} {thing} in each, then gives away {c} {thing}. "
                    f"How many {thing} does {name} have left?")
        args.append({"question": question})
    return args


@sgl.function
def tree_of_thought(s, question: str):
    s += INSTRUCTIONS + "Question: " + question + "\n"
    plans = s.fork(3)
    for i, plan in enumerate(plans):
        plan += PLAN_LEADS[i] + sgl.gen("plan", max_tokens=PLAN_TOKENS, stop="\n") + "\n"
        steps = plan.fork(3)
        for j, step in enumerate(steps):
            step += STEP_LEADS[j] + sgl.gen("solution", max_tokens=STEP_TOKENS, stop="\n") + "\n"
        steps.join()
    plans.join()


def outputs(state) -> dict[str, Any]:
    # plans in fork order; each plan's three solutions in fork order
    return {"plans": list(state["plan"]), "solutions": [list(sols) for sols in state["solution"]]}


def run_hf(hf, question: str) -> dict[str, Any]:
    root = INSTRUCTIONS + "Question: " + question + "\n"
    plans, solutions = [], []
    for i in range(3):
        plan_prompt = root + PLAN_LEADS[i]
        plan = hf.gen(plan_prompt, max_tokens=PLAN_TOKENS, stop="\n")
        plans.append(plan)
        sols = []
        for j in range(3):
            sols.append(hf.gen(plan_prompt + plan + "\n" + STEP_LEADS[j], max_tokens=STEP_TOKENS,
                               stop="\n"))
        solutions.append(sols)
    return {"plans": plans, "solutions": solutions}


def validate(kwargs: dict[str, Any], out: dict[str, Any]) -> None:
    require(len(out["plans"]) == 3 and all(isinstance(p, str) for p in out["plans"]), "expected 3 plans")
    require(len(out["solutions"]) == 3 and all(len(sols) == 3 for sols in out["solutions"]),
            "expected 3 solutions under each plan")
    require(all(isinstance(x, str) and "\n" not in x for sols in out["solutions"] for x in sols),
            "a solution is not a single line of text")


WORKLOAD = Workload(
    name="tree_of_thought", title="tree-of-thought (3x3 forks)", program=tree_of_thought, make_args=make_args,
    outputs=outputs, run_hf=run_hf, validate=validate, num_programs=4, num_hf_programs=1, paper_hit_rate="~98%",
)
