"""Role strings derived from the model's own chat template (the real SmolLM2 tokenizer)."""

from __future__ import annotations

import pytest

from sgnb.lang.chat_template import (
    CHATML_TEMPLATE,
    ChatTemplate,
    get_chat_template,
)
from sgnb.lang.errors import ChatTemplateError
from tests.vlm_fixtures import IMAGES_FIRST_TEMPLATE, PARTS_TEMPLATE


@pytest.fixture(scope="module")
def tokenizer(smollm2_path):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(smollm2_path), local_files_only=True)


CONVERSATIONS = [
    [{"role": "user", "content": "Hi"}],
    [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}],
    [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello!"}, {"role": "user", "content": "?"}],
    [{"role": "system", "content": "S"}, {"role": "user", "content": "a"}, {"role": "assistant", "content": "b"},
     {"role": "user", "content": "c"}, {"role": "assistant", "content": "d"}],
]


@pytest.mark.parametrize("messages", CONVERSATIONS)
@pytest.mark.parametrize("add_generation_prompt", [False, True])
def test_derived_template_renders_like_the_tokenizer(tokenizer, messages, add_generation_prompt):
    template = ChatTemplate.from_hf_tokenizer(tokenizer)
    expected = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=add_generation_prompt)
    assert template.render(messages, add_generation_prompt) == expected


def test_smollm2_roles_and_default_system_prompt(tokenizer):
    template = ChatTemplate.from_hf_tokenizer(tokenizer)
    assert template.role_prefix_and_suffix["user"] == ("<|im_start|>user\n", "<|im_end|>\n")
    assert template.stop_str == ("<|im_end|>",)
    # a conversation that opens with a user message gets the model's default system prompt first
    first_user = template.get_prefix_and_suffix("user", [])[0]
    assert first_user.startswith("<|im_start|>system\n") and first_user.endswith("<|im_start|>user\n")
    assert template.get_prefix_and_suffix("user", [{"role": "system", "content": "x"}])[0] == "<|im_start|>user\n"


def test_from_jinja_matches_from_tokenizer(tokenizer):
    from_jinja = ChatTemplate.from_jinja(tokenizer.chat_template)
    from_tok = ChatTemplate.from_hf_tokenizer(tokenizer)
    assert from_jinja.role_prefix_and_suffix == from_tok.role_prefix_and_suffix
    assert from_jinja.first_prefix == from_tok.first_prefix


def test_template_without_a_system_role_folds_it_into_user():
    jinja = (
        "{{ bos_token }}{% for m in messages %}"
        "{% if m['role'] == 'system' %}{{ raise_exception('System role not supported') }}{% endif %}"
        "<turn>{{ m['role'] }}\n{{ m['content'] }}</turn>\n{% endfor %}"
        "{% if add_generation_prompt %}<turn>assistant\n{% endif %}"
    )
    template = ChatTemplate.from_jinja(jinja, bos_token="<bos>")
    assert template.get_prefix_and_suffix("user", [])[0] == "<bos><turn>user\n"
    assert template.get_prefix_and_suffix("user", [{"role": "user", "content": "x"}])[0] == "<turn>user\n"
    assert template.get_prefix_and_suffix("assistant", [])[0] == "<turn>assistant\n"
    assert template.stop_str == ("</turn>",)


def test_template_that_rewrites_contents_is_refused():
    jinja = "{% for m in messages %}{{ m['role'] }}: {{ m['content'] | upper }}\n{% endfor %}"
    with pytest.raises(ChatTemplateError, match="does not render user contents verbatim"):
        ChatTemplate.from_jinja(jinja, name="shouty")


def test_named_templates():
    assert get_chat_template("chatml") is CHATML_TEMPLATE
    assert CHATML_TEMPLATE.render([{"role": "user", "content": "x"}], True) == (
        "<|im_start|>user\nx<|im_end|>\n<|im_start|>assistant\n"
    )
    with pytest.raises(ValueError, match="unknown chat template 'llama9'"):
        get_chat_template("llama9")
    with pytest.raises(ValueError, match="unknown role 'tool'"):
        CHATML_TEMPLATE.get_prefix_and_suffix("tool", [])


@pytest.mark.parametrize(("template", "image_text"), [(PARTS_TEMPLATE, "<image>"),
                                                      (IMAGES_FIRST_TEMPLATE, "<image>\n")])
def test_content_part_templates_give_roles_and_the_image_text(template, image_text):
    import jinja2

    derived = ChatTemplate.from_jinja(template, name="vlm", image_token="<image>")
    assert derived.image_token == image_text
    messages = [{"role": "user", "content": "Hi"}]
    as_parts = [{**m, "content": [{"type": "text", "text": m["content"]}]} for m in messages]
    expected = jinja2.Environment().from_string(template).render(messages=as_parts, add_generation_prompt=True)
    assert derived.render(messages, add_generation_prompt=True) == expected


def test_content_part_template_without_an_image_token_is_refused():
    with pytest.raises(ChatTemplateError):
        ChatTemplate.from_jinja(PARTS_TEMPLATE, name="vlm")


def test_string_template_keeps_the_models_image_token(tokenizer):
    derived = ChatTemplate.from_hf_tokenizer(tokenizer, image_token="<image>")
    assert derived.image_token == "<image>"
    assert derived.role_prefix_and_suffix == ChatTemplate.from_hf_tokenizer(tokenizer).role_prefix_and_suffix
