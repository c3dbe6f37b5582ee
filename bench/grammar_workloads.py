"""The grammar workloads of bench/grammar.py: each grammar in GBNF-style EBNF (what sgnb's `ebnf` and xgrammar
take) and in Lark (what outlines' CFG takes, and what the `lark` package parses outputs with), and its prompts.

  sql     a small SQL subset with nested AND / OR conditions (context-free: parentheses nest), from a question
  person  an XML record with a nested list: keyword-heavy (every closing tag and the next opening tag are
          forced once the model writes `<`), from a short passage

The two spellings of a grammar describe the same language; `parse` checks an output with the `lark` package
(Earley), independently of every constrained decoder.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from functools import cache

SQL_EBNF = r"""
root ::= "SELECT " cols " FROM " table where? ";"
cols ::= col (", " col)*
col ::= "name" | "age" | "city" | "salary" | "department"
table ::= "employees" | "customers"
where ::= " WHERE " cond
cond ::= term (" OR " term)*
term ::= factor (" AND " factor)*
factor ::= col " " op " " value | "(" cond ")"
op ::= "=" | ">" | "<"
value ::= [0-9]+ | "'" [A-Za-z ]+ "'"
"""

SQL_LARK = r"""
start: "SELECT " cols " FROM " table where? ";"
cols: col (", " col)*
col: "name" | "age" | "city" | "salary" | "department"
table: "employees" | "customers"
where: " WHERE " cond
cond: term (" OR " term)*
term: factor (" AND " factor)*
factor: col " " op " " value | "(" cond ")"
op: "=" | ">" | "<"
value: /[0-9]+/ | /'[A-Za-z ]+'/
"""

PERSON_EBNF = r"""
root ::= "<person>\n  <name>" text "</name>\n  <age>" [0-9]+ "</age>\n" city skills "\n</person>"
city ::= "  <city>" text "</city>\n"
skills ::= "  <skills>" skill+ "</skills>"
skill ::= "<skill>" text "</skill>"
text ::= [A-Za-z] [A-Za-z ]*
"""

PERSON_LARK = r"""
start: "<person>\n  <name>" TEXT "</name>\n  <age>" /[0-9]+/ "</age>\n" city skills "\n</person>"
city: "  <city>" TEXT "</city>\n"
skills: "  <skills>" skill+ "</skills>"
skill: "<skill>" TEXT "</skill>"
TEXT: /[A-Za-z][A-Za-z ]*/
"""

COLUMNS = ["name", "age", "city", "salary", "department"]
CITIES = ["Lisbon", "Oslo", "Lima", "Nairobi", "Osaka", "Quito", "Krakow", "Hanoi"]
DEPARTMENTS = ["Sales", "Research", "Support", "Finance"]
FIRST = ["Alden", "Briar", "Cass", "Della", "Edric", "Fenna", "Gideon", "Hazel", "Ivo", "June"]
LAST = ["Moss", "Quill", "Thorne", "Vance", "Wren", "Frost", "Hale", "Marsh"]
SKILLS = ["welding", "chess", "cooking", "sailing", "painting", "carpentry", "singing", "archery"]


@dataclass(frozen=True, slots=True)
class GrammarWorkload:
    name: str
    ebnf: str
    lark: str
    prompts: list[str]


def sql_question(rng: random.Random) -> str:
    cols = rng.sample(COLUMNS[:4], rng.choice([1, 2]))
    age, city, dept = rng.randrange(20, 60), rng.choice(CITIES), rng.choice(DEPARTMENTS)
    conds = rng.choice([f"older than {age}", f"living in {city}", f"in the {dept} department",
                        f"older than {age} who live in {city}", f"in {dept} or living in {city}"])
    return f"Show the {' and '.join(cols)} of the employees {conds}."


def person_passage(rng: random.Random) -> str:
    skills = rng.sample(SKILLS, rng.choice([1, 2, 3]))
    return (f"{rng.choice(FIRST)} {rng.choice(LAST)} is {rng.randrange(19, 80)} years old and lives in "
            f"{rng.choice(CITIES)}. Friends know them for {' and '.join(skills)}.")


def build_workloads(n: int, tokenizer, seed: int = 0) -> list[GrammarWorkload]:
    """n chat prompts per workload: an instruction with a one-shot example (shared prefix) and the program's input."""
    rng = random.Random(f"grammar-{seed}")
    sql_head = ("Table employees(name, age, city, salary, department). Answer with one SQL query.\n"
                "Example question: Show the name of the employees older than 30.\n"
                "Example query: SELECT name FROM employees WHERE age > 30;\n\n")
    person_head = ("Write the person described in the passage as XML, like the example.\n"
                   "Example passage: Ada Stone is 41 years old and lives in Porto. Friends know them for rowing.\n"
                   "Example XML: <person>\n  <name>Ada Stone</name>\n  <age>41</age>\n  <city>Porto</city>\n"
                   "  <skills><skill>rowing</skill></skills>\n</person>\n\n")

    def chat(text: str) -> str:
        return tokenizer.apply_chat_template([{"role": "user", "content": text}], tokenize=False,
                                             add_generation_prompt=True)

    return [
        GrammarWorkload("sql", SQL_EBNF, SQL_LARK,
                        [chat(sql_head + f"Question: {sql_question(rng)}\nQuery:") for _ in range(n)]),
        GrammarWorkload("person", PERSON_EBNF, PERSON_LARK,
                        [chat(person_head + f"Passage: {person_passage(rng)}\nXML:") for _ in range(n)]),
    ]


@cache
def _parser(lark_grammar: str):
    import lark

    return lark.Lark(lark_grammar, parser="earley", lexer="dynamic")


def parses(lark_grammar: str, text: str) -> bool:
    """Whether `text` is a sentence of the grammar, by the `lark` package's Earley parser."""
    import lark

    try:
        _parser(lark_grammar).parse(text)
    except lark.exceptions.LarkError:
        return False
    return True
