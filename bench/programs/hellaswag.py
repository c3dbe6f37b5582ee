"""HellaSwag-style commonsense completion: a few-shot prefix and a context, then `select` over 4 endings.

All four endings share the prompt, so `select` scores them from one cached prefix; the few-shot prefix is a
constant of the program, found by tracing and precached before the batch. Scenarios are written here.
"""

from __future__ import annotations

from typing import Any

import sgnb as sgl
from bench.programs.workload import Workload, require

SHOTS = [
    ("A man pours pancake batter into a hot pan. He", "waits for bubbles to form and flips the pancake over."),
    ("A girl puts on her helmet and climbs onto her bicycle. She", "pushes off and starts pedalling down the street."),
    ("A woman fills a watering can at the tap. She", "walks to the garden and waters the tomato plants."),
    ("A boy stacks wooden blocks into a tall tower. He", "adds one more block and the tower starts to wobble."),
]
PREFIX = ("Pick the most sensible way to finish each short scene. The right ending follows from what the person "
          "is doing and describes what would naturally happen next.\n\n"
          + "".join(f"Scene: {ctx} {end}\n\n" for ctx, end in SHOTS))

# (activity, right ending, three wrong endings); "{P}" is the pronoun of the person
SCENARIOS = [
    ("kneads a ball of dough on a floured table. {P}", "shapes it into a loaf and puts it in the oven.",
     ["paints the dough bright blue and hangs it on the wall.", "throws the table out of the window.",
      "reads the dough a bedtime story."]),
    ("ties the laces of a pair of running shoes. {P}", "stands up and jogs out of the front door.",
     ["eats the laces one by one.", "plants the shoes in a flower pot.", "sings to the shoes until they dance."]),
    ("opens an umbrella as the rain gets heavier. {P}", "holds it overhead and keeps walking to the bus stop.",
     ["folds the rain into a neat square.", "uses the umbrella to stir a pot of soup.",
      "climbs inside the umbrella and falls asleep."]),
    ("sets up an easel and squeezes paint onto a palette. {P}", "dips a brush and begins to paint a landscape.",
     ["drinks the paint through a straw.", "mails the easel to the moon.", "knits a sweater out of the brushes."]),
    ("puts a kettle on the stove and lights the burner. {P}", "waits for the water to boil and makes a cup of tea.",
     ["teaches the kettle to whistle a song.", "pours the burner into a glass.", "hides the stove under the bed."]),
    ("lifts a heavy box onto a trolley. {P}", "wheels the trolley across the room to the lift.",
     ["balances the trolley on a pencil.", "turns the box into a bird and it flies off.",
      "swims across the box to the other side."]),
    ("unrolls a yoga mat on the living room floor. {P}", "sits down, stretches and starts the first pose.",
     ["rolls the floor up with the mat.", "fills the mat with water and goes fishing.",
      "sends the mat to school with a packed lunch."]),
    ("scrapes ice from the windscreen of a car. {P}", "gets in, starts the engine and drives off slowly.",
     ["puts the ice back on the windscreen.", "builds a snowman inside the engine.",
      "asks the car to scrape itself."]),
]
PEOPLE = [("A woman", "She"), ("A man", "He"), ("An old man", "He"), ("A young woman", "She"), ("A boy", "He")]


def make_args(num_programs: int) -> list[dict[str, Any]]:
    args = []
    for i in range(num_programs):
        activity, right, wrong = SCENARIOS[i % len(SCENARIOS)]
        person, pronoun = PEOPLE[(i // len(SCENARIOS) + i) % len(PEOPLE)]
        if i >= len(SCENARIOS) * len(PEOPLE):
            person = f"{person} (number {i})"                       # keep every context distinct at large scales
        endings = wrong[:]
        endings.insert(i % 4, right)                                 # the right ending moves around
        args.append({"context": f"{person} {activity.format(P=pronoun)}", "endings": endings})
    return args


@sgl.function
def hellaswag(s, context: str, endings: list[str]):
    s += PREFIX
    s += "Scene: " + context + " "
    s += sgl.select("ending", choices=endings)


def outputs(state) -> dict[str, Any]:
    return {"ending": state["ending"]}


def run_hf(hf, context: str, endings: list[str]) -> dict[str, Any]:
    return {"ending": hf.select(PREFIX + "Scene: " + context + " ", endings)}


def validate(kwargs: dict[str, Any], out: dict[str, Any]) -> None:
    require(out["ending"] in kwargs["endings"], "the selected ending is not one of the choices")


WORKLOAD = Workload(
    name="hellaswag", title="HellaSwag (select of 4)", program=hellaswag, make_args=make_args, outputs=outputs,
    run_hf=run_hf, validate=validate, num_programs=12, num_hf_programs=3, paper_hit_rate="~98%",
)
