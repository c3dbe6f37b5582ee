"""Real Ctrl-C for tests: SIGINT the main thread (where pytest, and IPython's cells, run) while a program's
requests are generating; then check that the engine ended idle and intact."""

from __future__ import annotations

import signal
import threading
import time


def interrupt_when_running(engine, num_running: int = 1, delay: float = 0.2) -> threading.Event:
    """SIGINT the main thread `delay` s after `num_running` program requests are running in the engine.
    The returned event is set when the signal is sent."""
    fired = threading.Event()

    def fire() -> None:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            # program requests are named sgl-<state id>-<n> (EngineBackend)
            running = [r for r in engine.snapshot()["running"] if r.startswith("sgl-s")]
            if len(running) >= num_running:
                time.sleep(delay)
                fired.set()
                signal.pthread_kill(threading.main_thread().ident, signal.SIGINT)
                return
            time.sleep(0.02)

    threading.Thread(target=fire, name="test-interrupter", daemon=True).start()
    return fired


def assert_engine_idle(engine, timeout: float = 2.0) -> None:
    """Nothing running or waiting (allowing `timeout` s for the engine loop to settle); slots all accounted."""
    deadline = time.monotonic() + timeout
    while True:
        stats = engine.stats()
        if stats["num_running"] == 0 and stats["num_waiting"] == 0:
            break
        assert time.monotonic() < deadline, f"engine still busy after the interrupt: {stats}"
        time.sleep(0.02)
    assert engine.snapshot()["running"] == []
    engine.check_integrity()  # free + cached + in-use slots account for the whole pool
