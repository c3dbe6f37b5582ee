"""Chat templates as role begin/end strings, derived from a model's own template.

The interpreter renders `with s.user(): ...` as `prefix + content + suffix`. Models ship their template as a
function over messages (a Jinja string in the tokenizer). `ChatTemplate.from_renderer` recovers the per-role
strings by rendering conversations around sentinel contents and cutting at the sentinels, so the state text
of `user(x) + assistant(y)` equals the model's own `apply_chat_template([...])` rendering.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Callable

from sgnb.lang.errors import ChatTemplateError

#: `render(messages, add_generation_prompt) -> str`
Renderer = Callable[[list[dict], bool], str]

ROLES = ("system", "user", "assistant")
_SENTINELS = {"system": "@@SGNB_SYS_9c1@@", "user": "@@SGNB_USR_7b2@@", "assistant": "@@SGNB_AST_4e3@@"}


@dataclass(slots=True)
class ChatTemplate:
    """Per-role `(prefix, suffix)` strings.

    first_prefix: prefix used instead when the role opens the conversation (holds a BOS token or the
                  model's default system prompt that the template inserts before a leading user message).
    stop_str:     strings ending an assistant turn; the interpreter adds them to every gen's stop list.
    image_token:  text put into the state where `sgl.image(...)` appears: the model's image placeholder, as the
                  model's template writes it for an image content part (e.g. "<image>\n" for LLaVA).
    """

    name: str
    role_prefix_and_suffix: dict[str, tuple[str, str]]
    first_prefix: dict[str, str] = field(default_factory=dict)
    stop_str: tuple[str, ...] = ()
    image_token: str = "<image>"

    def __post_init__(self) -> None:
        for role in ROLES:
            if role not in self.role_prefix_and_suffix:
                raise ChatTemplateError(f"chat template {self.name!r} has no strings for role {role!r}")

    def get_prefix_and_suffix(self, role: str, hist_messages: list[dict]) -> tuple[str, str]:
        """Strings around a `role` message that follows `hist_messages`."""
        if role not in self.role_prefix_and_suffix:
            raise ValueError(f"unknown role {role!r}; expected one of {ROLES}")
        prefix, suffix = self.role_prefix_and_suffix[role]
        if not hist_messages and role in self.first_prefix:
            prefix = self.first_prefix[role]
        return prefix, suffix

    def render(self, messages: list[dict], add_generation_prompt: bool = False) -> str:
        """Render a whole conversation with these strings (equals the source template on its usual inputs)."""
        out = []
        for i, msg in enumerate(messages):
            prefix, suffix = self.get_prefix_and_suffix(msg["role"], messages[:i])
            out.append(prefix + str(msg["content"]) + suffix)
        if add_generation_prompt:
            out.append(self.get_prefix_and_suffix("assistant", messages)[0])
        return "".join(out)

    @classmethod
    def from_renderer(cls, render: Renderer, name: str = "model") -> ChatTemplate:
        """Derive role strings from a function rendering messages (e.g. the tokenizer's apply_chat_template)."""
        S, U, A = _SENTINELS["system"], _SENTINELS["user"], _SENTINELS["assistant"]
        sys_msg = {"role": "system", "content": S}
        user_msg = {"role": "user", "content": U}
        asst_msg = {"role": "assistant", "content": A}

        def split(text: str, sentinel: str, what: str) -> tuple[str, str]:
            if text.count(sentinel) != 1:
                raise ChatTemplateError(f"chat template {name!r} does not render {what} contents verbatim")
            before, after = text.split(sentinel)
            return before, after

        def delta(longer: str, shorter: str, what: str) -> str:
            if not longer.startswith(shorter):
                raise ChatTemplateError(
                    f"chat template {name!r} re-renders earlier messages when {what} is appended"
                )
            return longer[len(shorter) :]

        # user and assistant strings from a conversation without a system message
        only_user = render([user_msg], False)
        first_user_prefix, user_suffix = split(only_user, U, "user")
        user_asst = render([user_msg, asst_msg], False)
        asst_prefix, asst_suffix = split(delta(user_asst, only_user, "an assistant turn"), A, "assistant")
        gen_prompt = delta(render([user_msg], True), only_user, "the generation prompt")
        if gen_prompt:
            asst_prefix = gen_prompt  # what the model expects right before it answers
        second_user = delta(render([user_msg, asst_msg, user_msg], False), user_asst, "a second user turn")
        user_prefix, user_suffix2 = split(second_user, U, "user")
        if user_suffix2 != user_suffix:
            raise ChatTemplateError(f"chat template {name!r} ends user turns inconsistently")

        first_prefix = {"user": first_user_prefix, "assistant": asst_prefix}
        try:
            only_sys: str | None = render([sys_msg], False)
        except Exception:  # noqa: BLE001 - templates that reject the system role (e.g. Gemma's)
            only_sys = None
        if only_sys is None:  # a system message is written as a user turn
            sys_prefix, sys_suffix = first_user_prefix, user_suffix
        else:
            sys_prefix, sys_suffix = split(only_sys, S, "system")
            sys_user = delta(render([sys_msg, user_msg], False), only_sys, "a user turn after a system turn")
            if split(sys_user, U, "user")[0] != user_prefix:
                raise ChatTemplateError(
                    f"chat template {name!r} opens user turns differently after a system turn"
                )
        first_prefix["system"] = sys_prefix
        # a system message later in the conversation (rare): measure it when the template allows one
        mid_sys_prefix, mid_sys_suffix = sys_prefix, sys_suffix
        try:
            mid = delta(render([user_msg, asst_msg, sys_msg], False), user_asst, "a later system turn")
            mid_sys_prefix, mid_sys_suffix = split(mid, S, "system")
        except Exception:  # noqa: BLE001 - the template allows system only first
            pass
        stop = asst_suffix.strip()
        return cls(
            name=name,
            role_prefix_and_suffix={
                "system": (mid_sys_prefix, mid_sys_suffix),
                "user": (user_prefix, user_suffix),
                "assistant": (asst_prefix, asst_suffix),
            },
            first_prefix=first_prefix,
            stop_str=(stop,) if stop else (),
        )

    @classmethod
    def from_vision_renderer(cls, render: Renderer, name: str, image_token: str | None) -> ChatTemplate:
        """`from_renderer`, for a model that may take images (`image_token`: its placeholder, None if it takes
        none). Vision-language templates (SmolVLM's, LLaVA's) read content-part lists, not strings: when plain
        contents do not render, they are sent as `[{"type": "text", "text": ...}]`. The template's rendering of
        an image part becomes `image_token`."""

        def render_parts(messages: list[dict], add_generation_prompt: bool) -> str:
            return render([{**m, "content": [{"type": "text", "text": m["content"]}]} for m in messages],
                          add_generation_prompt)

        try:
            template = cls.from_renderer(render, name=name)
        except Exception:  # noqa: BLE001 - a parts-only template may fail in its own way on plain strings
            if image_token is None:
                raise
            template = cls.from_renderer(render_parts, name=name)
        if image_token is not None:
            template.image_token = _image_text(render, image_token)
        return template

    @classmethod
    def from_hf_tokenizer(cls, tokenizer, name: str | None = None, image_token: str | None = None) -> ChatTemplate:
        """Derive from a HF tokenizer's `chat_template`; a tokenizer without one gets `DEFAULT_TEMPLATE`.
        `image_token`: the model's image placeholder (see `from_vision_renderer`)."""
        if not getattr(tokenizer, "chat_template", None):
            return DEFAULT_TEMPLATE if image_token is None else replace(DEFAULT_TEMPLATE, image_token=image_token)

        def render(messages: list[dict], add_generation_prompt: bool) -> str:
            return tokenizer.apply_chat_template(
                messages, tokenize=False, add_generation_prompt=add_generation_prompt
            )

        name = name or getattr(tokenizer, "name_or_path", "model") or "model"
        return cls.from_vision_renderer(render, name, image_token)

    @classmethod
    def from_jinja(cls, template: str, name: str = "model", image_token: str | None = None,
                   **special_tokens: str) -> ChatTemplate:
        """Derive from a Jinja chat template string (as served by a remote model), with e.g. bos_token=...;
        `image_token`: the model's image placeholder (see `from_vision_renderer`)."""
        import jinja2
        from jinja2.sandbox import ImmutableSandboxedEnvironment

        def raise_exception(message: str) -> None:
            raise jinja2.exceptions.TemplateError(message)

        env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)
        env.globals["raise_exception"] = raise_exception
        compiled = env.from_string(template)

        def render(messages: list[dict], add_generation_prompt: bool) -> str:
            return compiled.render(messages=messages, add_generation_prompt=add_generation_prompt, **special_tokens)

        return cls.from_vision_renderer(render, name, image_token)


def _image_text(render: Renderer, image_token: str) -> str:
    """What `render` writes for an image content part before a text part ("<image>" for SmolVLM, "<image>\n" for
    LLaVA); `image_token` itself when the template does not render image parts."""
    text_sentinel = _SENTINELS["user"]
    try:
        out = render([{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": text_sentinel}]}],
                     False)
    except Exception:  # noqa: BLE001 - a template that reads contents as strings only
        return image_token
    if out.count(image_token) != 1 or out.count(text_sentinel) != 1:
        return image_token
    start, end = out.index(image_token), out.index(text_sentinel)
    return out[start:end] if start < end else image_token


#: plain-text roles for models without a chat template (and completion APIs)
DEFAULT_TEMPLATE = ChatTemplate(
    name="default",
    role_prefix_and_suffix={"system": ("SYSTEM: ", "\n"), "user": ("USER: ", "\n"), "assistant": ("ASSISTANT: ", "\n")},
)

#: ChatML (`<|im_start|>role\n ... <|im_end|>\n`), used by many instruct models
CHATML_TEMPLATE = ChatTemplate(
    name="chatml",
    role_prefix_and_suffix={
        "system": ("<|im_start|>system\n", "<|im_end|>\n"),
        "user": ("<|im_start|>user\n", "<|im_end|>\n"),
        "assistant": ("<|im_start|>assistant\n", "<|im_end|>\n"),
    },
    stop_str=("<|im_end|>",),
)

NAMED_TEMPLATES: dict[str, ChatTemplate] = {t.name: t for t in (DEFAULT_TEMPLATE, CHATML_TEMPLATE)}


def get_chat_template(name: str) -> ChatTemplate:
    """A built-in template by name ('default', 'chatml')."""
    if name not in NAMED_TEMPLATES:
        raise ValueError(f"unknown chat template {name!r}; expected one of {sorted(NAMED_TEMPLATES)}")
    return NAMED_TEMPLATES[name]
