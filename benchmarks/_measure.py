"""Timing and peak-memory helpers shared by the benchmark scripts."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import torch


def _rss_bytes() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * _PAGE


try:
    import resource

    _PAGE = resource.getpagesize()
except ImportError:  # pragma: no cover - non-Unix
    _PAGE = 4096


def measure(fn: Callable[[], Any], device: torch.device) -> tuple[Any, float, int]:
    """Run ``fn`` once; return (result, seconds, peak memory above the start in bytes).

    On CUDA the peak comes from the allocator; on the CPU a thread samples the
    process's resident set size every millisecond.
    """
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        start_memory = torch.cuda.memory_allocated(device)
        start = time.perf_counter()
        result = fn()
        torch.cuda.synchronize(device)
        seconds = time.perf_counter() - start
        return result, seconds, torch.cuda.max_memory_allocated(device) - start_memory

    start_memory = _rss_bytes()
    peak = [start_memory]
    running = [True]

    def sample() -> None:
        while running[0]:
            peak[0] = max(peak[0], _rss_bytes())
            time.sleep(0.001)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    start = time.perf_counter()
    try:
        result = fn()
    finally:
        seconds = time.perf_counter() - start
        running[0] = False
        sampler.join()
    return result, seconds, max(peak[0], _rss_bytes()) - start_memory


def compare(
    reference: Callable[[], Any], ours: Callable[[], Any], repeats: int, device: torch.device
) -> dict[str, Any]:
    """Run both ``repeats`` times, alternating; best time and largest peak memory of each."""
    best = {"reference": float("inf"), "ours": float("inf")}
    peak = {"reference": 0, "ours": 0}
    results: dict[str, Any] = {}
    for _ in range(repeats):
        for name, fn in (("reference", reference), ("ours", ours)):
            results[name], seconds, memory = measure(fn, device)
            best[name] = min(best[name], seconds)
            peak[name] = max(peak[name], memory)
    return {"results": results, "seconds": best, "peak": peak}
