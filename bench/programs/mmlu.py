"""Few-shot MMLU-style multiple choice: per subject a shared 5-shot prefix, then the question, a 1-token answer.

As in SGLang's MMLU benchmark, the examples are an argument (not a constant of the program), so the sharing
is found by the radix cache at run time, not by tracing. Questions are synthetic and deterministic.
"""

from __future__ import annotations

import random
from typing import Any, Callable

import sgnb as sgl
from bench.programs.workload import Workload, require

LETTERS = "ABCD"
CAPITALS = [("France", "Paris"), ("Japan", "Tokyo"), ("Kenya", "Nairobi"), ("Peru", "Lima"), ("Canada", "Ottawa"),
            ("Egypt", "Cairo"), ("Norway", "Oslo"), ("Chile", "Santiago"), ("India", "New Delhi"),
            ("Poland", "Warsaw"), ("Ghana", "Accra"), ("Spain", "Madrid"), ("Turkey", "Ankara"),
            ("Vietnam", "Hanoi"), ("Mexico", "Mexico City"), ("Austria", "Vienna"), ("Cuba", "Havana"),
            ("Greece", "Athens"), ("Thailand", "Bangkok"), ("Portugal", "Lisbon")]
ELEMENTS = [("hydrogen", "H"), ("helium", "He"), ("carbon", "C"), ("nitrogen", "N"), ("oxygen", "O"),
            ("sodium", "Na"), ("magnesium", "Mg"), ("aluminium", "Al"), ("silicon", "Si"), ("sulfur", "S"),
            ("chlorine", "Cl"), ("potassium", "K"), ("calcium", "Ca"), ("iron", "Fe"), ("copper", "Cu"),
            ("zinc", "Zn"), ("silver", "Ag"), ("gold", "Au"), ("lead", "Pb"), ("tin", "Sn")]


def _arithmetic(rng: random.Random) -> tuple[str, list[str], int]:
    a, b, rows = rng.randint(12, 99), rng.randint(12, 99), rng.randint(2, 9)
    if rng.random() < 0.5:
        question = f"A warehouse holds {a} crates and receives {b} more. How many crates does it hold now?"
        answer = a + b
    else:
        question = f"A tray holds {a} cups in each row and has {rows} rows. How many cups does it hold?"
        answer = a * rows
    wrong = sorted({answer + d for d in (-10, -2, 1, 11, 20)} - {answer})
    return question, [str(answer)] + [str(w) for w in rng.sample(wrong, 3)], 0


def _geography(rng: random.Random) -> tuple[str, list[str], int]:
    (country, capital), *others = rng.sample(CAPITALS, 4)
    return f"Which city is the capital of {country}?", [capital] + [c for _, c in others], 0


def _chemistry(rng: random.Random) -> tuple[str, list[str], int]:
    (element, symbol), *others = rng.sample(ELEMENTS, 4)
    return f"What is the chemical symbol of the element {element}?", [symbol] + [s for _, s in others], 0


SUBJECTS: dict[str, Callable[[random.Random], tuple[str, list[str], int]]] = {
    "elementary mathematics": _arithmetic,
    "world geography": _geography,
    "high school chemistry": _chemistry,
}


def _format(rng: random.Random, question: str, options: list[str], correct: int) -> tuple[str, str]:
    """The question with its options shuffled into A-D, and the correct letter."""
    order = list(range(4))
    rng.shuffle(order)
    lines = [question] + [f"{LETTERS[k]}. {options[i]}" for k, i in enumerate(order)]
    return "\n".join(lines) + "\nAnswer:", LETTERS[order.index(correct)]


def _examples(subject: str) -> str:
    rng = random.Random(f"shots/{subject}")
    text = f"The following are multiple choice questions (with answers) about {subject}.\n\n"
    for _ in range(5):
        q, letter = _format(rng, *SUBJECTS[subject](rng))
        text += f"{q} {letter}\n\n"
    return text


def make_args(num_programs: int) -> list[dict[str, Any]]:
    subjects = list(SUBJECTS)
    examples = {s: _examples(s) for s in subjects}
    args = []
    for i in range(num_programs):
        subject = subjects[i * len(subjects) // num_programs]       # questions grouped by subject, as in MMLU
        rng = random.Random(f"question/{subject}/{i}")
        question, _ = _format(rng, *SUBJECTS[subject](rng))
        args.append({"examples": examples[subject], "question": question})
    return args


@sgl.function
def few_shot_mmlu(s, examples: str, question: str):
    s += examples + question + sgl.gen("answer", max_tokens=1)


def outputs(state) -> dict[str, Any]:
    return {"answer": state["answer"]}


def run_hf(hf, examples: str, question: str) -> dict[str, Any]:
    return {"answer": hf.gen(examples + question, max_tokens=1)}


def validate(kwargs: dict[str, Any], out: dict[str, Any]) -> None:
    require(isinstance(out["answer"], str), "answer is not a string")
    require(len(out["answer"]) <= 16, "a one-token answer cannot be this long")


WORKLOAD = Workload(
    name="mmlu", title="few-shot MMLU (1-token gen)", program=few_shot_mmlu, make_args=make_args,
    outputs=outputs, run_hf=run_hf, validate=validate, num_programs=24, num_hf_programs=6, paper_hit_rate="~85%",
)
