"""`make demo`: a short real run on the default model, printed with rich.

1. A chat question, streamed token by token.
2. A few-shot batch whose shared prefix is computed once and then served from the radix cache.
"""

from __future__ import annotations

import time


def main() -> None:
    from rich.console import Console
    from rich.table import Table

    from sgnb.engine import Engine

    console = Console(highlight=False)
    with console.status("loading smollm2-135m"):
        engine = Engine("smollm2-135m")
    try:
        console.rule("[bold]1. Chat, streamed")
        question = "What is the capital of France?"
        console.print(f"[bold]user:[/bold] {question}")
        console.print("[bold]assistant:[/bold] ", end="")
        prompt = engine.apply_chat_template([{"role": "user", "content": question}])
        for delta in engine.generate(prompt, {"max_new_tokens": 48, "temperature": 0}, stream=True):
            console.print(delta["text"], end="", style="cyan")
        console.print()

        console.rule("[bold]2. A shared few-shot prefix, reused through the radix cache")
        shots = ("Classify the sentiment of each review as positive or negative.\n"
                 "Review: The food was cold and the waiter was rude.\nSentiment: negative\n"
                 "Review: A wonderful evening, I will come back!\nSentiment: positive\n"
                 "Review: The room was dirty and noisy all night.\nSentiment: negative\n")
        reviews = ["Absolutely loved the concert.", "The package arrived broken.",
                   "Great value for the money.", "I waited two hours and nobody helped me."]
        t0 = time.perf_counter()
        results = engine.generate([f"{shots}Review: {r}\nSentiment:" for r in reviews],
                                  {"max_new_tokens": 3, "temperature": 0, "stop": "\n"})
        elapsed = time.perf_counter() - t0
        table = Table("review", "sentiment", "prompt tokens", "from cache")
        for review, res in zip(reviews, results):
            meta = res["meta_info"]
            table.add_row(review, res["text"].strip(), str(meta["prompt_tokens"]), str(meta["cached_tokens"]))
        console.print(table)
        stats = engine.stats()
        console.print(f"{len(reviews)} requests in {elapsed:.2f} s, cache hit rate {stats['cache_hit_rate']:.0%}, "
                      f"{stats['tree_tokens']} tokens in the radix tree")
        engine.check_integrity()
    finally:
        engine.shutdown()


if __name__ == "__main__":
    main()
