"""Prints the peer benchmark's tables and the issue's targets (met or missed, with the ratio
measured in the same run) from the report dict peers.py builds (the same dict goes to JSON)."""
from __future__ import annotations

from fastapi_report import fastapi_targets, print_fastapi

FAILED = "FAILED: "


def ratio_text(value: float | None, base: float | None, width: int = 10) -> str:
    return f"{value / base:>{width - 1}.2f}x" if value is not None and base else f"{'-':>{width}}"


def each(results: dict):
    """(name, result) for the results that ran; prints a line for those that failed."""
    for name, result in results.items():
        if "error" in result:
            print(f"  {name:<25} {FAILED}{result['error']}")
            continue
        yield name, result
        for problem in result.get("cleanup", []):
            print(f"    cleanup: {problem}")


def print_timing(results: dict) -> None:
    print(f"  {'supervisor':<13}{'n':>4}{'median ms':>11}{'max ms':>10}{'÷ deployctl':>13}")
    base = results.get("deployctl", {}).get("ms", {}).get("median")
    for name, result in each(results):
        stats = result["ms"]
        print(f"  {name:<13}{stats['n']:>4}{stats['median']:>11.1f}{stats['max']:>10.1f}"
              f"{ratio_text(stats['median'], base, 13)}")


FLOOR = "direct"  # the startup floor (direct_launch.c), a reference side, not a peer


def print_startup(results: dict) -> None:
    """print_timing plus each side's ratio to the floor and deployctl's overhead over it."""
    print_timing(results)
    floor = results.get(FLOOR, {}).get("ms", {}).get("median")
    if not floor:
        return
    print("  ÷ floor: " + ", ".join(f"{name} {stats['ms']['median'] / floor:.2f}x"
                                    for name, stats in each(results) if name != FLOOR))
    ours = results.get("deployctl", {}).get("ms", {}).get("median")
    if ours is not None:
        print(f"  deployctl over the floor: {ours - floor:+.1f} ms")
    print(f"  (floor: {FLOOR} = direct_launch.c, fork+exec of the workers and nothing else)")


def print_rolling(results: dict) -> None:
    print(f"  {'supervisor':<25}{'req/s':>9}{'non-2xx':>9}{'sock err':>10}"
          f"{'no-answer ms':>14}{'failed probes':>15}{'restart ms':>12}")
    for name, result in each(results):
        errors = sum(result["socket_errors"].values())
        probes = f"{result['failed_probes']}/{result['probes']}"
        print(f"  {name:<25}{result['requests_per_s']:>9.0f}{result['non_2xx']:>9}{errors:>10}"
              f"{result['longest_no_answer_ms']:>14.1f}{probes:>15}"
              f"{result['restart_command_ms']:>12.0f}")
    print("  (no-answer: longest window in which new connections, tried every ~2 ms, got no "
          "200;\n   sock err: wrk's connect+read+write+timeout errors; restart ms: the restart "
          "command's run time)")


def print_scale(results: dict) -> None:
    print(f"  {'supervisor':<13}{'n':>4}{'up med ms':>11}{'up max':>9}{'÷ dctl':>9}"
          f"{'down med ms':>13}{'down max':>10}{'÷ dctl':>9}")
    base = results.get("deployctl", {})
    for name, result in each(results):
        up, down = result["up_ms"], result["down_ms"]
        print(f"  {name:<13}{up['n']:>4}{up['median']:>11.0f}{up['max']:>9.0f}"
              f"{ratio_text(up['median'], base.get('up_ms', {}).get('median'), 9)}"
              f"{down['median']:>13.0f}{down['max']:>10.0f}"
              f"{ratio_text(down['median'], base.get('down_ms', {}).get('median'), 9)}")
    print("  (up: scale command -> N workers run and every port answers; down: -> only 1 runs)")


def print_footprint(results: dict) -> None:
    print(f"  {'supervisor':<13}{'procs':>6}{'RSS MiB':>9}{'PSS MiB':>9}{'÷ dctl PSS':>11}"
          f"{'CPU ms':>8}{'CPU %':>7}{'window s':>9}")
    base = results.get("deployctl", {}).get("pss_kib")
    for name, result in each(results):
        print(f"  {name:<13}{result['processes']:>6}{result['rss_kib'] / 1024:>9.1f}"
              f"{result['pss_kib'] / 1024:>9.1f}{ratio_text(result['pss_kib'], base, 11)}"
              f"{result['cpu_ms']:>8.0f}{result['cpu_percent']:>7.2f}{result['window_s']:>9.1f}")
    print("  (the supervisor's own processes only, summed: deployctl's daemon, runsvdir + a runsv "
          "per\n   service, s6-svscan + an s6-supervise per service, supervisord, gunicorn's "
          "arbiter; RSS\n   counts shared pages once per process, PSS splits them)")


def print_throughput(result: dict) -> None:
    if "error" in result:
        print(f"  {FAILED}{result['error']}")
        return
    print(f"  {'server':<15}{'req/s':>10}{'p99 ms':>9}{'runs':>6}")
    for name in ("deploy-server", "nginx"):
        data = result[name]
        print(f"  {name:<15}{data['requests_per_s']:>10.0f}{data['p99_ms']:>9.2f}"
              f"{len(data['runs']):>6}")
    print(f"  deploy-server ÷ nginx req/s: {result['ratio']:.2f}")
    for problem in result.get("cleanup", []):
        print(f"    cleanup: {problem}")


def print_crash(result: dict) -> None:
    if "error" in result:
        print(f"  {FAILED}{result['error']}")
        return
    print(f"  {'supervisor':<13}{'variant':<13}{'starts':>7}{'restarts':>9}  end state")
    for name, variants in result["by_supervisor"].items():
        for variant, data in variants.items():
            print(f"  {name:<13}{variant:<13}{data['starts']:>7}{data['restarts']:>9}  "
                  f"{data['state'][:110]}")
    for problem in result.get("cleanup", []):
        print(f"    cleanup: {problem}")


PRINTERS = {"recovery": print_timing, "startup": print_startup, "scale": print_scale,
            "footprint": print_footprint, "rolling": print_rolling,
            "throughput": print_throughput, "crash_loop": print_crash, "fastapi": print_fastapi}


def fastest_peer(results: dict, value) -> tuple[str, float] | None:
    peers = [(name, value(r)) for name, r in results.items()
             if name not in ("deployctl", FLOOR) and "error" not in r]
    return min(peers, key=lambda pair: pair[1]) if peers else None


def below_floor(results: dict, factor: float, peer: tuple[str, float]) -> str:
    """Where the floor stands against the peer, and 'unreachable' when factor x the peer's
    median is below the floor's median ("" for a scenario without a floor)."""
    floor = results.get(FLOOR, {}).get("ms", {}).get("median")
    if not floor:
        return ""
    where = f"the floor ({FLOOR} {floor:.1f} ms = {floor / peer[1]:.3f}x {peer[0]})"
    if factor * peer[1] < floor:
        return f"; unreachable: {factor}x {peer[0]} = {factor * peer[1]:.1f} ms is below {where}"
    return f"; {where}"


def targets(report: dict) -> list[str]:
    """The issue's targets, each as 'met' or 'MISSED' with the figures of this run."""
    lines = []
    # Issue 12 item 4: recovery ≤ 0.5x runit's, startup ≤ 0.3x the fastest peer's.
    for scenario, factor, only in (("recovery", 0.5, "runit"), ("startup", 0.3, None)):
        results = report.get(scenario, {})
        ours = results.get("deployctl", {}).get("ms", {}).get("median")
        peer = fastest_peer({k: v for k, v in results.items() if only in (None, k, "deployctl")},
                            lambda r: r["ms"]["median"])
        if ours is not None and peer:
            verdict = "met" if ours <= factor * peer[1] else "MISSED"
            lines.append(f"{scenario} median ≤ {factor}x {only or 'the fastest peer'}'s: "
                         f"{verdict} ({ours:.1f} ms vs {peer[0]} {peer[1]:.1f} ms, "
                         f"{ours / peer[1]:.2f}x){below_floor(results, factor, peer)}")
    up = report.get("scale", {}).get("deployctl", {}).get("up_ms", {}).get("median")
    if up is not None:
        lines.append(f"scale 1 -> N ≤ 250 ms: {'met' if up <= 250 else 'MISSED'} ({up:.0f} ms)")
    footprint = report.get("footprint", {})
    ours = footprint.get("deployctl", {})
    if "rss_kib" in ours:
        mib = ours["rss_kib"] / 1024
        lines.append(f"footprint RSS ≤ 8 MiB with {ours['replicas']} replicas: "
                     f"{'met' if mib <= 8 else 'MISSED'} ({mib:.1f} MiB)")
    for name, kind, limit in (("deployctl", "http", 0.8),
                              ("deployctl+deploy-server", "control", 0.3)):
        result = footprint.get(name, {})
        if "cpu_percent" in result:
            cpu = result["cpu_percent"]
            lines.append(f"{result['replicas']} idle replicas, `{kind}` health every 1 s, ≤ "
                         f"{limit}% of a core: {'met' if cpu <= limit else 'MISSED'} "
                         f"({cpu:.2f}%)")
    # Judged with deploy-server, which drains on DRAIN=1. The tiny worker just exits on
    # SIGTERM with keep-alive connections open, which fails requests under every supervisor.
    rolling = report.get("rolling", {}).get("deployctl+deploy-server", {})
    if "non_2xx" in rolling:
        failed = rolling["non_2xx"] + sum(rolling["socket_errors"].values())
        ok = failed == 0 and rolling["failed_probes"] == 0
        lines.append(f"rolling restart (deployctl+deploy-server): zero failed requests and no "
                     f"gap: {'met' if ok else 'MISSED'} ({failed} failed requests, "
                     f"{rolling['failed_probes']} failed probes, longest gap "
                     f"{rolling['longest_no_answer_ms']:.1f} ms)")
    throughput = report.get("throughput", {})
    if "ratio" in throughput:
        lines.append(f"deploy-server ≥ 0.9x nginx req/s: "
                     f"{'met' if throughput['ratio'] >= 0.9 else 'MISSED'} "
                     f"({throughput['ratio']:.2f}x)")
    return lines + fastapi_targets(report.get("fastapi", {}))


def print_report(report: dict, titles: dict) -> None:
    meta = report["meta"]
    print(f"peer benchmark ({meta['cpus']} CPUs, load before {meta['load_before']}, "
          f"{meta.get('build_type', 'unknown')} build, "
          f"{'quick' if meta['quick'] else 'full'} run); worker: tiny_worker.c")
    for scenario, printer in PRINTERS.items():
        if scenario in report:
            print(f"\n{scenario}: {titles[scenario]}")
            printer(report[scenario])
    print("\ntargets (ratios from this run; ÷ deployctl > 1: the peer is slower or bigger):")
    for line in targets(report):
        print(f"  {line}")
    print(f"\ntotal {meta['seconds']:.1f} s")
