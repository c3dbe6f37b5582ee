"""JSON extraction: a one-shot instruction, a passage about a (fictional) city, then `gen(json_schema=...)`.

The instruction and its worked example are constants of the program (traced and precached before the batch);
the schema's keys and punctuation are forced text that sgnb's jump-forward appends without decoding.
Passages are synthetic and deterministic.
"""

from __future__ import annotations

import json
from typing import Any

import sgnb as sgl
from bench.programs.workload import Workload, require
from sgnb.constrained import schema_to_regex

SCHEMA = {
    "type": "object",
    "properties": {
        "name": {"type": "string", "maxLength": 20},
        "country": {"type": "string", "maxLength": 20},
        "founded": {"type": "string", "pattern": "[0-9]{3,4}"},
        "river": {"type": "string", "maxLength": 20},
        "known_for": {"type": "string", "maxLength": 32},
    },
    "required": ["name", "country", "founded", "river", "known_for"],
}
REGEX = schema_to_regex(SCHEMA)            # what the engine compiles for json_schema (compact whitespace)
MAX_TOKENS = 96

SYLLABLES = ["bar", "len", "tor", "mis", "ka", "dor", "vel", "sun", "ra", "ost", "lin", "gar"]
COUNTRIES = ["Norland", "Estavia", "Marovia", "Kelden", "Sudria", "Valtoria", "Orvanis", "Tessaly"]
FEATURES = ["its glass bridges", "a spring flower market", "copper bells", "its night trams", "salt caves",
            "a floating library", "blue clay pottery", "an old observatory"]
EXAMPLE = (
    "Passage: Quarren is a harbour city in Palvia. It was founded in 1132 on the banks of the river Esk, where "
    "fishermen first built wooden huts. Today it is best known for its lighthouse festival, which draws "
    "visitors every August.\n"
    'JSON: {"name":"Quarren","country":"Palvia","founded":"1132","river":"Esk","known_for":"its lighthouse '
    'festival"}\n\n'
)
INSTRUCTIONS = ("Read the passage about a city and extract its facts as one line of JSON with the keys name, "
                "country, founded, river and known_for, copying the words from the passage.\n\n" + EXAMPLE)


def _city(i: int) -> str:
    a, b, c = SYLLABLES[i % 12], SYLLABLES[(i * 5 + 3) % 12], SYLLABLES[(i * 7 + 1) % 12]
    return (a + b + c).capitalize()


def make_args(num_programs: int) -> list[dict[str, Any]]:
    args = []
    for i in range(num_programs):
        name, river = _city(i), _city(i + 17)[:5].capitalize()
        country = COUNTRIES[i % len(COUNTRIES)]
        year = 900 + (i * 137) % 1000
        feature = FEATURES[(i * 3) % len(FEATURES)]
        passage = (f"{name} is a city in the north of {country}. It was founded in {year} beside the river {river}, "
                   f"which still carries barges of grain and timber through the old town. The city grew quickly "
                   f"after a railway arrived, and about {40 + i % 50} thousand people live there now. Visitors "
                   f"come mostly for {feature}, and the local football team plays in red.")
        args.append({"passage": passage})
    return args


@sgl.function
def json_extraction(s, passage: str):
    s += INSTRUCTIONS
    s += "Passage: " + passage + "\nJSON: " + sgl.gen("json", max_tokens=MAX_TOKENS, json_schema=SCHEMA)


def outputs(state) -> dict[str, Any]:
    return {"json": state["json"]}


def run_hf(hf, passage: str) -> dict[str, Any]:
    return {"json": hf.gen(INSTRUCTIONS + "Passage: " + passage + "\nJSON: ", max_tokens=MAX_TOKENS, regex=REGEX)}


def validate(kwargs: dict[str, Any], out: dict[str, Any]) -> None:
    try:
        value = json.loads(out["json"])
    except (TypeError, json.JSONDecodeError) as exc:
        require(False, f"the output is not JSON ({exc})")
    require(isinstance(value, dict) and list(value) == SCHEMA["required"], "the JSON does not have the schema's keys")
    require(all(isinstance(v, str) for v in value.values()), "a JSON value is not a string")
    require(value["founded"].isdigit() and 3 <= len(value["founded"]) <= 4, "founded is not a 3-4 digit year")


WORKLOAD = Workload(
    name="json_extraction", title="JSON extraction (json_schema)", program=json_extraction, make_args=make_args,
    outputs=outputs, run_hf=run_hf, validate=validate, num_programs=8, num_hf_programs=2, regexes=(REGEX,),
)
