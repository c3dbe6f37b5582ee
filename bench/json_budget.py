"""JSON outputs at the token limit (issue 18 item 6): are outputs that end at `max_new_tokens` still valid?

Runs every schema of tests/constrained/json_schemas.py plus a few open-ended real-world-like ones (open
arrays of objects, long free strings) on the real SmolLM2, greedy (or sampled), one batch per `max_new_tokens`, and
reports per budget: how many outputs ended at `length`, how many of those (and of all) are valid JSON per
`json.loads` + `jsonschema.validate`, and what `meta_info["constraint"]["is_complete"]` says.

    .venv/bin/python bench/json_budget.py [--budgets 24,48,96] [--schemas open_object_list,...]
                                         [--temperature 0.9] [--verbose]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import jsonschema

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.constrained.json_schemas import SCHEMAS  # noqa: E402

# open-ended schemas: nothing bounds their length but the token budget
OPEN_SCHEMAS: dict[str, dict] = {
    "open_object_list": {"type": "array", "items": {
        "type": "object", "properties": {"name": {"type": "string"}, "tags": {"type": "array", "items": {"type": "string"}}},
        "required": ["name", "tags"]}},
    "long_strings": {"type": "object", "properties": {"title": {"type": "string"}, "summary": {"type": "string"},
                                                      "body": {"type": "string", "minLength": 20}},
                     "required": ["title", "summary", "body"]},
    "open_int_list": {"type": "array", "items": {"type": "integer"}},
}


def _schema_dict(schema) -> dict:
    return schema.model_json_schema() if hasattr(schema, "model_json_schema") else schema


def is_valid(text: str, schema: dict) -> bool:
    try:
        jsonschema.validate(json.loads(text), schema)
    except (json.JSONDecodeError, jsonschema.ValidationError):
        return False
    return True


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--budgets", default="24,48,96", help="comma-separated max_new_tokens values")
    parser.add_argument("--schemas", default="", help="comma-separated schema names (default: all)")
    parser.add_argument("--temperature", type=float, default=0.0, help="0: greedy; else sampled, seeded per schema")
    parser.add_argument("--verbose", action="store_true", help="print every output that ended at length")
    args = parser.parse_args()
    from sgnb.constrained import TokenVocab, compile_regex, distances_to_accept, schema_to_regex
    from sgnb.engine import Engine

    engine = Engine("smollm2-135m", dtype="float32")
    schemas = {name: _schema_dict(s) for name, s in {**SCHEMAS, **OPEN_SCHEMAS}.items()}
    names = args.schemas.split(",") if args.schemas else list(schemas)
    prompts = [engine.apply_chat_template([{"role": "user", "content": f"Return a long JSON value for the '{name}' "
                                            "schema, with many items and long texts."}]) for name in names]
    vocab = TokenVocab.from_tokenizer(engine.tokenizer, eos_token_ids=engine.eos_ids)
    shortest = {name: int(distances_to_accept(fsm)[fsm.initial_state])
                for name in names for fsm in [compile_regex(schema_to_regex(schemas[name]), vocab)]}
    print(f"{'max_new_tokens':>14} {'outputs':>7} {'refused':>7} {'at length':>9} {'valid at length':>15} "
          f"{'valid':>5} {'is_complete ok':>14}")
    for budget in (int(b) for b in args.budgets.split(",")):
        # the engine refuses a budget below the shortest valid output: leave those out of the batch
        kept = [i for i, name in enumerate(names) if shortest[name] <= budget]
        num_refused = len(names) - len(kept)
        outs = engine.generate([prompts[i] for i in kept], [
            {"json_schema": json.dumps(schemas[names[i]]), "temperature": args.temperature, "sampling_seed": i,
             "max_new_tokens": budget} for i in kept])
        results = [(names[i], out) for i, out in zip(kept, outs)]
        at_length = [(n, r) for n, r in results if r["meta_info"]["finish_reason"]["type"] == "length"]
        valid = {n for n, r in results if is_valid(r["text"], schemas[n])}
        complete_ok = sum(r["meta_info"]["constraint"].get("is_complete") == (n in valid) for n, r in results)
        print(f"{budget:>14} {len(results):>7} {num_refused:>7} {len(at_length):>9} "
              f"{sum(n in valid for n, _ in at_length):>15} {len(valid):>5} {complete_ok:>14}")
        if args.verbose:
            for name, result in at_length:
                print(f"    {name:>18} valid={name in valid} {result['text']!r}")
        engine.check_integrity()
    engine.shutdown()


if __name__ == "__main__":
    main()
