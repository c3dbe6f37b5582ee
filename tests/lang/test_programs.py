"""SGLang's frontend test programs, written SGLang-style with only the import changed, run on SmolLM2.

A 135M model knows little, so most checks are structural (the answer is one of the choices, the JSON
parses, the int parses); the few factual checks are ones SmolLM2 answers confidently under greedy decoding.
"""

from __future__ import annotations

import json
import re

import pytest

import sgnb as sgl

pytestmark = pytest.mark.slow


def test_few_shot_qa(backend):
    @sgl.function
    def few_shot_qa(s, question):
        s += "The following are questions with answers.\n\n"
        s += "Q: What is the capital of France?\nA: Paris\n"
        s += "Q: What is the capital of Germany?\nA: Berlin\n"
        s += "Q: What is the capital of Italy?\nA: Rome\n"
        s += "Q: " + question + "\nA:" + sgl.gen("answer", stop="\n", temperature=0, max_tokens=12)

    state = few_shot_qa.run(question="What is the capital of Spain?")
    answer = state["answer"]
    assert "\n" not in answer
    assert "madrid" in answer.lower()
    assert state.text().endswith("A:" + answer)
    meta = state.get_meta_info("answer")
    assert meta["finish_reason"]["type"] in ("stop", "length")
    assert meta["prompt_tokens"] > 40 and meta["completion_tokens"] >= 1


def test_mt_bench(backend, engine):
    @sgl.function
    def answer_mt_bench(s, question_1, question_2):
        s += sgl.system("You are a helpful assistant.")
        s += sgl.user(question_1)
        s += sgl.assistant(sgl.gen("answer_1", max_tokens=16))
        s += sgl.user(question_2)
        s += sgl.assistant(sgl.gen("answer_2", max_tokens=16))

    state = answer_mt_bench.run(
        question_1="Name one fruit.", question_2="Name one colour.", temperature=0
    )
    messages = state.messages()
    assert [m["role"] for m in messages] == ["system", "user", "assistant", "user", "assistant"]
    assert messages[2]["content"] == state["answer_1"].lstrip() and state["answer_1"].strip()
    assert messages[4]["content"] == state["answer_2"].lstrip() and state["answer_2"].strip()
    # the state text is exactly the model's own chat template over those messages
    assert state.text() == engine.apply_chat_template(messages, add_generation_prompt=False)
    # the second turn re-reads the first from the radix cache
    assert state.get_meta_info("answer_2")["cached_tokens"] > state.get_meta_info("answer_1")["prompt_tokens"] // 2


def test_select(backend, engine):
    @sgl.function
    def true_or_false(s, statement):
        s += "Determine whether the statement below is True, False, or Unknown.\n"
        s += "Statement: " + statement + "\n"
        s += "Answer:" + sgl.select("answer", ["True", "False", "Unknown"])

    state = true_or_false.run(statement="The capital of France is Paris.")
    answer = state["answer"]
    assert answer in ["True", "False", "Unknown"]
    meta = state.get_meta_info("answer")
    scores = meta["normalized_prompt_logprobs"]
    assert len(scores) == 3 and answer == ["True", "False", "Unknown"][scores.index(max(scores))]
    # the scores are the mean logprob of each choice's tokens, as the engine computes them directly
    prompt = state.text()[: -len(answer)]
    for choice, score in zip(["True", "False", "Unknown"], scores):
        ids = engine.tokenizer.encode(prompt + choice)
        num_prompt = len(engine.tokenizer.encode(prompt))
        direct = engine.score(input_ids=ids, logprob_start_len=num_prompt)["meta_info"]["input_token_logprobs"]
        assert score == pytest.approx(sum(x[0] for x in direct) / len(direct), abs=1e-3)


def test_decode_int(backend):
    @sgl.function
    def decode_int(s):
        s += "The number of hours in a day is " + sgl.gen_int("hours") + "\n"
        s += "The number of days in a year is " + sgl.gen_int("days") + "\n"

    state = decode_int.run(temperature=0.1, max_new_tokens=8)
    # gen_int's constraint: an optional sign and digits, nothing else
    assert re.fullmatch(r"-?\d+", state["hours"]) and re.fullmatch(r"-?\d+", state["days"])


def test_decode_json_regex(backend):
    city_regex = (
        r"""\{\n"""
        + r"""  "name": "[\w\d\s]{1,16}",\n"""
        + r"""  "country": "[\w\d\s]{1,16}",\n"""
        + r"""  "population": [-+]?[0-9]{1,9}\n"""
        + r"""\}"""
    )

    @sgl.function
    def decode_json(s):
        s += "Generate a JSON object to describe the basic city information of Paris.\n"
        s += sgl.gen("json_output", max_tokens=64, regex=city_regex)

    state = decode_json.run(temperature=0)
    data = json.loads(state["json_output"])
    assert set(data) == {"name", "country", "population"}
    assert isinstance(data["population"], int)
    assert re.fullmatch(city_regex, state["json_output"])


def test_decode_json_dtype(backend):
    @sgl.function
    def decode_json(s):
        s += "Generate a JSON object to describe the basic city information of Paris.\n"
        with s.var_scope("json_output"):
            s += "{\n"
            s += '  "name": ' + sgl.gen_string(max_tokens=12) + ",\n"
            s += '  "population": ' + sgl.gen_int(max_tokens=10) + ",\n"
            s += '  "area": ' + sgl.gen(dtype=int, max_tokens=10) + ",\n"
            s += '  "country": ' + sgl.gen_string(max_tokens=12) + "\n"
            s += "}"

    state = decode_json.run(temperature=0)
    data = json.loads(state["json_output"])
    assert list(data) == ["name", "population", "area", "country"]
    assert isinstance(data["name"], str) and isinstance(data["population"], int)
    assert isinstance(data["area"], int) and isinstance(data["country"], str)


def test_expert_answer(backend):
    @sgl.function
    def expert_answer(s, question):
        s += "Question: " + question + "\n"
        s += "A good person to answer this question is" + sgl.gen("expert", stop=".", max_tokens=12) + ".\n"
        s += "For instance," + s["expert"] + " would answer that "
        s += sgl.gen("answer", stop=".", max_tokens=16) + "."

    state = expert_answer.run(question="What is the capital of France?", temperature=0)
    expert = state["expert"]
    assert expert.strip() and "." not in expert
    assert state.text().count(expert) >= 2
    assert "." not in state["answer"]


def test_tool_use(backend):
    @sgl.function
    def tool_use(s, lhs, rhs):
        s += "Please perform computations using a calculator. You can use calculate(expression) to get the results.\n"
        s += "For example,\ncalculate(1+2)=3\ncalculate(3*4)=12\n"
        s += "Question: What is the product of " + str(lhs) + " and " + str(rhs) + "?\n"
        s += "Answer: The answer is calculate(" + sgl.gen("expression", stop=")", max_tokens=12) + ") = "
        with s.var_scope("answer"):
            s += str(eval(s["expression"], {"__builtins__": {}}))

    state = tool_use.run(lhs=23, rhs=19, temperature=0)
    assert ")" not in state["expression"]
    assert state["answer"] == str(eval(state["expression"], {"__builtins__": {}}))
    assert state.text().endswith(") = " + state["answer"])


def test_react(backend):
    @sgl.function
    def react(s, question):
        s += (
            "Question: What is the elevation range for the area that the eastern sector of the Colorado orogeny "
            "extends into?\n"
            "Thought 1: I need to search Colorado orogeny, find the area that the eastern sector extends into.\n"
            "Action 1: Search[Colorado orogeny]\n"
            "Observation 1: The Colorado orogeny was an episode of mountain building in Colorado.\n"
            "Thought 2: The eastern sector extends into the High Plains. I know enough.\n"
            "Action 2: Finish[1,800 to 7,000 ft]\n\n"
        )
        s += "Question: " + question + "\n"
        for i in range(1, 3):
            s += f"Thought {i}:" + sgl.gen(f"thought_{i}", stop=[f"\nAction {i}", "\n"], max_tokens=16)
            s += f"\nAction {i}: " + sgl.select(f"action_{i}", choices=["Search", "Finish"])
            s += "[" + sgl.gen(f"argument_{i}", stop="]", max_tokens=8) + "]\n"
            if s[f"action_{i}"] == "Finish":
                break
            s += f"Observation {i}: nothing found.\n"

    state = react.run(question="Which magazine was started first, Arthur's Magazine or First for Women?",
                      temperature=0)
    assert state["action_1"] in ("Search", "Finish")
    assert "]" not in state["argument_1"]
    if state["action_1"] == "Search":
        assert state["action_2"] in ("Search", "Finish")
    assert state.text().count("Thought ") >= 2


def test_parallel_decoding(backend):
    @sgl.function
    def parallel_decoding(s, topic):
        s += "Act as a helpful assistant.\n"
        s += "USER: Give some tips for " + topic + ".\n"
        s += "ASSISTANT: Okay. Here are three tips: 1. Balanced diet. 2. Regular exercise. 3. Enough sleep.\n\n"
        forks = s.fork(3)
        for i in range(3):
            forks[i] += f"Now, expand tip {i + 1} into a detailed paragraph:\n"
            forks[i] += sgl.gen("detailed_tip", max_tokens=16, stop="\n\n")
        forks.join()
        for i in range(3):
            s += f"Tip {i + 1}:" + forks[i]["detailed_tip"] + "\n"
        s += "In summary," + sgl.gen("summary", max_tokens=12)

    state = parallel_decoding.run(topic="staying healthy", temperature=0)
    tips = state["detailed_tip"]  # gathered from the forks, in fork order
    assert isinstance(tips, list) and len(tips) == 3
    for i, tip in enumerate(tips):
        assert f"Tip {i + 1}:{tip}\n" in state.text()
    assert state["summary"]
    snap = state.snapshot()
    assert len(snap["children"]) == 3 and snap["num_cache_commits"] == 1
    for child in snap["children"]:
        span = next(sp for sp in child["spans"] if sp["name"] == "detailed_tip")
        assert span["meta_info"]["cached_tokens"] > 0  # extends from the committed prefix


def test_parallel_encoding(backend):
    @sgl.function
    def parallel_encoding(s, question, context_0, context_1, context_2):
        s += "USER: I will ask a question based on some statements.\n"
        s += "ASSISTANT: Sure. I will answer the question based on the statements.\n"
        s += "USER: "
        forks = s.fork(3)
        forks[0] += "Statement 1: " + context_0 + "\n"
        forks[1] += "Statement 2: " + context_1 + "\n"
        forks[2] += "Statement 3: " + context_2 + "\n"
        forks.join(mode="concate_and_append")
        s += "Now, please answer the following question. Do not list options.\n"
        s += "Question: " + question + "\n"
        s += "ASSISTANT:" + sgl.gen("answer", stop="\n", max_tokens=12)

    contexts = ["Tom is 5 years old.", "Alice is 7 years old.", "Bob is 9 years old."]
    state = parallel_encoding.run(
        question="Who is the oldest?", context_0=contexts[0], context_1=contexts[1], context_2=contexts[2],
        temperature=0,
    )
    text = state.text()
    expected = "".join(f"Statement {i + 1}: {c}\n" for i, c in enumerate(contexts))
    assert "USER: " + expected + "Now, please answer" in text
    assert "\n" not in state["answer"]


def test_streaming(backend):
    @sgl.function
    def qa(s, question):
        s += sgl.system("You are a helpful assistant.")
        s += sgl.user(question)
        s += sgl.assistant(sgl.gen("answer", max_tokens=24))

    state = qa.run(question="Tell me a short story about a cat.", stream=True, temperature=0)
    pieces = list(state.text_iter())
    assert len(pieces) > 2  # the text arrives in pieces as it is generated
    assert "".join(pieces) == state.text()

    state = qa.run(question="Tell me a short story about a cat.", stream=True, temperature=0)
    pieces = list(state.text_iter("answer"))
    assert len(pieces) > 2
    assert "".join(pieces) == state["answer"]


def test_regex(backend):
    ip_regex = r"((25[0-5]|2[0-4]\d|[01]?\d\d?)\.){3}(25[0-5]|2[0-4]\d|[01]?\d\d?)"

    @sgl.function
    def regex_gen(s):
        s += "Q: What is the IP address of the Google DNS servers?\n"
        s += "A: " + sgl.gen("answer", temperature=0, regex=ip_regex, max_tokens=20)

    state = regex_gen.run()
    assert re.fullmatch(ip_regex, state["answer"])


def test_dtype_gen(backend):
    @sgl.function
    def dtype_gen(s):
        s += "Q: What is the full name of DNS?\n"
        s += "A: The full name is " + sgl.gen("str_res", dtype=str, stop="\n", max_tokens=16) + "\n"
        s += "Q: Which year was DNS invented?\n"
        s += "A: " + sgl.gen("int_res", dtype=int, max_tokens=8) + "\n"
        s += "Q: What is the value of pi?\n"
        s += "A: " + sgl.gen("float_res", dtype=float, max_tokens=8) + "\n"
        s += "Q: Is the sky blue?\n"
        s += "A: " + sgl.gen("bool_res", dtype=bool, max_tokens=4) + "\n"

    state = dtype_gen.run(temperature=0)
    assert state["str_res"].startswith('"') and state["str_res"].endswith('"')
    assert re.fullmatch(r"-?\d+", state["int_res"])
    assert re.fullmatch(r"-?\d+(\.\d+)?([eE][-+]?\d+)?", state["float_res"])
    assert state["bool_res"] in ("True", "False")


def test_tree_of_thought_hits_the_radix_cache(backend, engine):
    @sgl.function
    def tree_of_thought(s, question):
        s += "You are a careful problem solver. Think step by step and keep each step short.\n"
        s += "Question: " + question + "\n"
        plans = s.fork(3)
        for i, plan in enumerate(plans):
            plan += f"Plan {i + 1}:" + sgl.gen("plan", max_tokens=8, stop="\n") + "\n"
            steps = plan.fork(3)
            for j, step in enumerate(steps):
                step += f"Step {j + 1}:" + sgl.gen("step", max_tokens=6, stop="\n") + "\n"
                step += "Is this step correct? " + sgl.select("verdict", ["yes", "no"])
            steps.join()
        plans.join()

    before = engine.stats()
    state = tree_of_thought.run(question="How many legs do three cats have?", temperature=0)
    after = engine.stats()
    snap = state.snapshot()
    assert len(snap["children"]) == 3
    assert all(len(plan["children"]) == 3 for plan in snap["children"])
    for plan in snap["children"]:
        plan_span = next(sp for sp in plan["spans"] if sp["name"] == "plan")
        assert plan_span["meta_info"]["cached_tokens"] > 0
        for step in plan["children"]:
            step_span = next(sp for sp in step["spans"] if sp["name"] == "step")
            # the step extends the plan's committed prefix, which itself extends the question's
            assert step_span["meta_info"]["cached_tokens"] >= plan_span["meta_info"]["prompt_tokens"]
            assert step["variables"]["verdict"] in ("yes", "no")
    assert len(state["plan"]) == 3
    queried = after["queried_tokens"] - before["queried_tokens"]
    cached = after["cached_tokens"] - before["cached_tokens"]
    hit_rate = cached / queried
    print(f"\ntree-of-thought 3x3: radix cache hit rate {hit_rate:.1%} ({cached}/{queried} prompt tokens)")
    assert hit_rate > 0.6
