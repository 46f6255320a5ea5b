"""Tables and targets of the FastAPI scenario (fastapi_bench.py) from its results dict."""
from __future__ import annotations

import re


def fmt(value, spec: str, missing: str = "-") -> str:
    """value formatted by spec (">8.0f"), or `missing` right-aligned to the same width."""
    width = int(re.match(r">(\d+)", spec)[1])
    return format(value, spec) if value is not None else f"{missing:>{width}}"


def print_fastapi(results: dict) -> None:
    if "error" in results:
        print(f"  FAILED: {results['error']}")
        return
    sides = {name: r for name, r in results.items() if isinstance(r, dict) and "server" in r}
    print(f"  {'side':<34}{'keep-alive req/s':>17}{'p50':>7}{'p99':>7}{'err':>5}"
          f"{'close req/s':>12}{'p50':>7}{'p99':>7}{'err':>5}{'RSS MiB':>9}{'PSS MiB':>9}")
    for name, r in sides.items():
        ka, cl, mem = r["keepalive"], r["close"], r["memory"]
        print(f"  {name:<34}{ka['requests_per_s']:>17.0f}{ka['p50_ms']:>7.1f}{ka['p99_ms']:>7.1f}"
              f"{ka['errors']:>5}{cl['requests_per_s']:>12.0f}{cl['p50_ms']:>7.1f}"
              f"{cl['p99_ms']:>7.1f}{cl['errors']:>5}{mem['rss_kib'] / 1024:>9.0f}"
              f"{mem['pss_kib'] / 1024:>9.0f}")
    print(f"\n  {'side':<34}{'rolling k-a err':>16}{'gap ms':>8}{'rolling close err':>18}"
          f"{'gap ms':>8}{'restart s':>10}{'kill -9 err':>12}{'held':>5}{'new pid ms':>11}")
    for name, r in sides.items():
        rk, rc, kill = r.get("rolling_keepalive"), r.get("rolling_close"), r["kill"]
        print(f"  {name:<34}{fmt(rk and rk['errors'], '>16')}"
              f"{fmt(rk and rk['longest_no_answer_ms'], '>8.0f')}"
              f"{fmt(rc and rc['errors'], '>18')}{fmt(rc and rc['longest_no_answer_ms'], '>8.0f')}"
              f"{fmt(rk and rk['restart_ms'] / 1000, '>10.1f')}{kill['errors']:>12}"
              f"{fmt(kill.get('victim_connections'), '>5')}"
              f"{fmt(kill['recovered_ms'], '>11.0f', 'never')}")
    print("  (medians of the runs; p50/p99 in ms; err: wrk's socket errors + non-2xx; gap: the "
          "longest\n   window with no answer to fresh connections; held: client connections the "
          "killed process\n   held when it was killed; new pid ms: kill -9 until a new process "
          "answers)")
    for problem in results.get("cleanup", []):
        print(f"    cleanup: {problem}")


def fastapi_targets(results: dict) -> list[str]:
    """Issue 12's targets: deployctl + uvicorn against the best peer running the same server
    (uvicorn with uvloop + httptools) with the same number of processes."""
    ours = results.get("deployctl+uvicorn-std")
    peers = {name: r for name, r in results.items() if isinstance(r, dict)
             and r.get("server") == "uvicorn-std" and not name.startswith("deployctl")}
    if not ours or "keepalive" not in ours or not peers:
        return []
    best_name, best = max(peers.items(), key=lambda item: item[1]["keepalive"]["requests_per_s"])
    rate = ours["keepalive"]["requests_per_s"] / best["keepalive"]["requests_per_s"]
    p99 = ours["keepalive"]["p99_ms"] / best["keepalive"]["p99_ms"]
    lines = [f"deployctl+uvicorn req/s ≥ 1.0x the best peer's ({best_name}): "
             f"{'met' if rate >= 1.0 else 'MISSED'} ({rate:.2f}x)",
             f"deployctl+uvicorn p99 ≤ 1.1x the best peer's ({best_name}): "
             f"{'met' if p99 <= 1.1 else 'MISSED'} ({p99:.2f}x)"]
    rolling_peers = [r["rolling_keepalive"]["errors"] for r in peers.values()
                     if "rolling_keepalive" in r]
    if "rolling_keepalive" in ours and rolling_peers:
        errors, best_errors = ours["rolling_keepalive"]["errors"], min(rolling_peers)
        lines.append(f"rolling restart, keep-alive: errors ≤ the best peer's: "
                     f"{'met' if errors <= best_errors else 'MISSED'} ({errors} vs {best_errors})")
        closed = ours["rolling_close"]["errors"]
        lines.append(f"rolling restart, Connection: close: 0 errors: "
                     f"{'met' if closed == 0 else 'MISSED'} ({closed})")
    killed = ours["kill"]["errors"]
    lines.append(f"kill -9 under load: 0 failed requests: {'met' if killed == 0 else 'MISSED'} "
                 f"({killed})")
    return lines
