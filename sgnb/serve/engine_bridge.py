"""Calls into the Engine from async route handlers without blocking the event loop.

The engine runs its own loop thread; `engine.generate` blocks the caller until the result is ready.
Route handlers therefore call it from worker threads (a dedicated limiter so that many waiting
requests never starve other thread users), and streams are pumped by one thread per stream into an
asyncio queue. A stream whose client goes away is aborted in the engine so its KV is freed.
"""

from __future__ import annotations

import asyncio
import functools
import threading
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import anyio
import anyio.to_thread

from sgnb.serve.errors import APIError

# Waiting requests each hold one worker thread (it blocks on an engine future, it does not compute).
_MAX_WAITING_THREADS = 512
_END = object()


def new_rid(prefix: str = "req") -> str:
    return f"{prefix}-{uuid.uuid4().hex}"


class EngineBridge:
    """Async facade over one Engine: `generate`, `stream`, `flush_cache`, plus model facts."""

    def __init__(self, engine: Any) -> None:
        self.engine = engine
        self._limiter = anyio.CapacityLimiter(_MAX_WAITING_THREADS)

    async def call(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """Run a blocking engine call on a worker thread; engine ValueErrors (bad input) become HTTP 400."""
        try:
            return await anyio.to_thread.run_sync(
                functools.partial(fn, *args, **kwargs), limiter=self._limiter
            )
        except ValueError as exc:
            raise APIError(400, str(exc)) from exc

    async def generate(self, **kwargs: Any) -> Any:
        return await self.call(self.engine.generate, **kwargs)

    async def score(self, **kwargs: Any) -> Any:
        return await self.call(self.engine.score, **kwargs)

    async def flush_cache(self) -> Any:
        return await self.call(self.engine.flush_cache)

    async def apply_chat_template(self, messages: list[dict[str, Any]], continue_final_message: bool = False) -> str:
        """The prompt for a chat request: the model's template, ending with the assistant's generation prompt
        (or, with `continue_final_message`, inside the last assistant message)."""
        if not continue_final_message:
            return await self.call(self.engine.apply_chat_template, messages)
        return await self.call(
            self.engine.tokenizer.apply_chat_template, messages, tokenize=False,
            add_generation_prompt=False, continue_final_message=True,
        )

    async def open_stream(self, **kwargs: Any) -> AsyncIterator[dict[str, Any]]:
        """Start one streaming request; return an async iterator over the engine's stream items.

        Errors raised while submitting (bad params) surface here, before any response bytes are sent.
        If the consumer stops early (client gone), the request is aborted in the engine.
        """
        rid = kwargs.setdefault("rid", new_rid())
        iterator = await self.call(self.engine.generate, stream=True, **kwargs)
        return self._pump(iter(iterator), rid)

    async def open_streams(self, requests: list[dict[str, Any]]) -> list[AsyncIterator[dict[str, Any]]]:
        """`open_stream` for each request; if one is refused, the ones already started are aborted."""
        streams: list[AsyncIterator[dict[str, Any]]] = []
        try:
            for kwargs in requests:
                streams.append(await self.open_stream(**kwargs))
        except BaseException:
            for kwargs in requests[: len(streams)]:
                self.engine.abort(kwargs["rid"])
            raise
        return streams

    async def _pump(self, iterator: Iterator[dict[str, Any]], rid: str) -> AsyncIterator[dict[str, Any]]:
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[Any] = asyncio.Queue()
        stop = threading.Event()

        def put(item: Any) -> None:
            try:
                loop.call_soon_threadsafe(queue.put_nowait, item)
            except RuntimeError:  # the loop is closed: nobody is listening any more
                stop.set()

        def pump() -> None:
            try:
                for item in iterator:
                    put(item)
                    if stop.is_set():
                        return
                put(_END)
            except BaseException as exc:  # noqa: BLE001 - handed to the consumer
                put(exc)

        thread = threading.Thread(target=pump, name=f"sgnb-serve-stream-{rid}", daemon=True)
        thread.start()
        finished = False
        try:
            while True:
                item = await queue.get()
                if item is _END:
                    finished = True
                    return
                if isinstance(item, BaseException):
                    finished = True
                    if isinstance(item, ValueError):
                        raise APIError(400, str(item)) from item
                    raise item
                yield item
        finally:
            if not finished:
                stop.set()
                self.engine.abort(rid)


async def merge_streams(streams: list[AsyncIterator[Any]]) -> AsyncIterator[tuple[int, Any]]:
    """Interleave several async iterators, yielding `(index, item)` as items arrive."""
    if len(streams) == 1:
        async for item in streams[0]:
            yield 0, item
        return
    queue: asyncio.Queue[tuple[int, Any]] = asyncio.Queue()

    async def drain(index: int, stream: AsyncIterator[Any]) -> None:
        try:
            async for item in stream:
                await queue.put((index, item))
            await queue.put((index, _END))
        except Exception as exc:  # noqa: BLE001 - re-raised by the consumer
            await queue.put((index, exc))

    tasks = [asyncio.create_task(drain(i, s)) for i, s in enumerate(streams)]
    try:
        num_open = len(tasks)
        while num_open:
            index, item = await queue.get()
            if item is _END:
                num_open -= 1
            elif isinstance(item, BaseException):
                raise item
            else:
                yield index, item
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
