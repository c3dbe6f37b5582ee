"""bench/grammar_workloads.py: each workload's two spellings (EBNF for sgnb and xgrammar, Lark for outlines and
the output check) describe the same language, so the systems of bench/grammar.py get the same constraint."""

from __future__ import annotations

import pytest

from bench.grammar_workloads import PERSON_EBNF, PERSON_LARK, SQL_EBNF, SQL_LARK, build_workloads, parses

PERSON = "<person>\n  <name>Ada Stone</name>\n  <age>41</age>\n  <city>Porto</city>\n  <skills>{}</skills>\n</person>"
SAMPLES = {
    "sql": (SQL_EBNF, SQL_LARK, {
        "SELECT name FROM employees;": True,
        "SELECT name, age FROM customers WHERE (age > 30 OR city = 'Oslo') AND salary < 9;": True,
        "SELECT name FROM employees WHERE ((age = 1));": True,
        "SELECT name FROM employees WHERE (age = 1;": False,       # unbalanced
        "SELECT email FROM employees;": False,                     # no such column
        "SELECT name FROM employees": False,                       # no closing ;
    }),
    "person": (PERSON_EBNF, PERSON_LARK, {
        PERSON.format("<skill>rowing</skill><skill>chess</skill>"): True,
        PERSON.format("<skill>rowing</skill>"): True,
        PERSON.format(""): False,                                  # at least one skill
        PERSON.format("<skill>rowing</skill>").replace("<age>41", "<age>forty"): False,
    }),
}


@pytest.fixture(scope="module")
def matcher_for(smollm2_path):
    """EBNF grammar -> a fresh llguidance matcher over SmolLM2's tokenizer (what sgnb's `ebnf` compiles with)."""
    import llguidance
    import llguidance.hf
    from transformers import AutoTokenizer

    hf_tokenizer = AutoTokenizer.from_pretrained(str(smollm2_path))
    tokenizer = llguidance.hf.from_tokenizer(hf_tokenizer)

    def make(ebnf: str):
        matcher = llguidance.LLMatcher(tokenizer, llguidance.grammar_from("grammar", ebnf), log_level=0)
        assert not matcher.is_error(), matcher.get_error()
        return matcher, hf_tokenizer

    return make


@pytest.mark.parametrize("name", list(SAMPLES))
def test_ebnf_and_lark_spellings_accept_the_same_sentences(name, matcher_for):
    ebnf, lark_grammar, samples = SAMPLES[name]
    for text, is_sentence in samples.items():
        assert parses(lark_grammar, text) is is_sentence, text
        matcher, hf_tokenizer = matcher_for(ebnf)
        ids = hf_tokenizer.encode(text, add_special_tokens=False)
        accepted = matcher.validate_tokens(ids) == len(ids) and matcher.consume_tokens(ids) and matcher.is_accepting()
        assert accepted is is_sentence, text


def test_workloads_are_deterministic_chat_prompts_sharing_their_instruction(smollm2_path):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(smollm2_path))
    first, again = build_workloads(3, tokenizer), build_workloads(3, tokenizer)
    assert [w.prompts for w in first] == [w.prompts for w in again]
    for workload in first:
        assert len(set(workload.prompts)) == 3 and all(p.startswith("<|im_start|>") for p in workload.prompts)
        head = workload.prompts[0].split("Question:" if workload.name == "sql" else "Passage:")[0]
        assert all(p.startswith(head) for p in workload.prompts)   # the one-shot example is a shared prefix
