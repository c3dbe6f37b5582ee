"""The SGLang-compatible language: primitives (ir), programs, the interpreter and its backends."""
