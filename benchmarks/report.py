"""The table and the plot made from one run of benchmarks/suite.py.

``markdown(results, previous)`` renders results.md: a table per broker, the
settings and versions behind every figure, the issue's targets read off the
same run (as ratios, so the machine's noise cancels), and aq's figures against
the previous landed run. ``plot(results, path)`` draws results.png.
"""

from __future__ import annotations

import functools
import operator
from collections.abc import Callable
from pathlib import Path
from typing import Any

BROKERS = {"redis": "Redis", "amqp": "RabbitMQ"}
# metric -> (label, format, True if higher is better)
METRICS: dict[str, tuple[str, str, bool]] = {
    "drain_per_s": ("drain (tasks/s)", "{:,.0f}", True),
    "enqueue_per_s": ("enqueue (tasks/s)", "{:,.0f}", True),
    "p50_ms": ("round trip p50 (ms)", "{:.2f}", False),
    "p95_ms": ("round trip p95 (ms)", "{:.2f}", False),
    "p99_ms": ("round trip p99 (ms)", "{:.2f}", False),
    "fanout_s": ("fan-out (s)", "{:.2f}", False),
    "drain_cpu_us": ("worker CPU per task in drain (µs)", "{:,.0f}", False),
    "drain_rss_mb": ("RSS in drain (MB)", "{:.0f}", False),
    "fanout_rss_mb": ("RSS in fan-out (MB)", "{:.0f}", False),
}
REGRESSION = 0.10  # a figure worse than the last landed run's by more than this is flagged


# figure -> (how many tasks it covers, the workload it belongs to)
COUNTS = {
    "drain_per_s": ("drain_count", "drain"),
    "p50_ms": ("round_trip_count", "round_trip"),
    "fanout_s": ("fanout_done", "fanout"),
}


def _cell(figures: dict[str, Any], key: str, spread: bool = True, sizes: Any = None) -> str:
    if key not in figures:
        return "–"
    fmt = METRICS[key][1]
    f = figures[key]
    text = fmt.format(f["median"])
    if spread and len(f["runs"]) > 1:
        text += f" ({fmt.format(f['min'])}–{fmt.format(f['max'])})"
    count_key, workload = COUNTS.get(key, ("", ""))
    if sizes is not None and count_key in figures:
        covered = figures[count_key]["min"]
        if covered < sizes[workload]:  # the time budget ran out first
            if key == "fanout_s":
                text = f"> {fmt.format(f['median'])} ({covered:,.0f} done)"
            else:
                text += f" (over {covered:,.0f})"
    return text


def _median(entry: dict[str, Any], key: str) -> float | None:
    figure = entry.get("figures", {}).get(key)
    return None if figure is None else float(figure["median"])


def _of_broker(results: dict[str, Any], broker: str) -> dict[str, dict[str, Any]]:
    return {k: v for k, v in results["systems"].items() if v["broker"] == broker}


def _table(results: dict[str, Any], broker: str) -> list[str]:
    systems = _of_broker(results, broker)
    sizes = results["meta"]["sizes"]
    ceiling = next((_median(v, "drain_per_s") for v in systems.values() if v["ceiling"]), None)
    lines = [
        "| system | drain (tasks/s) | of ceiling | worker CPU per task (µs) | enqueue (tasks/s) "
        "| round trip p50 (ms) | p95 / p99 (ms) | fan-out (s) | peak RSS drain / fan-out (MB) |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for entry in systems.values():
        f = entry.get("figures", {})
        drain = _median(entry, "drain_per_s")
        share = f"{drain / ceiling:.0%}" if drain and ceiling else "–"
        name = f"**{entry['label']}**" if entry["label"] == "aq" else entry["label"]
        tail = f"{_cell(f, 'p95_ms', False)} / {_cell(f, 'p99_ms', False)}"
        rss = f"{_cell(f, 'drain_rss_mb', False)} / {_cell(f, 'fanout_rss_mb', False)}"
        lines.append(
            f"| {name} | {_cell(f, 'drain_per_s', sizes=sizes)} | {share} "
            f"| {_cell(f, 'drain_cpu_us', False)} "
            f"| {_cell(f, 'enqueue_per_s')} | {_cell(f, 'p50_ms', sizes=sizes)} | {tail} "
            f"| {_cell(f, 'fanout_s', sizes=sizes)} | {rss} |"
        )
    lines.append("")
    for entry in systems.values():
        versions = ", ".join(f"{k} {v}" for k, v in entry["packages"].items())
        lines.append(f"- **{entry['label']}** ({versions}): {entry['settings'] or 'defaults'}")
        lines.extend(f"  - problem: {p}" for p in entry.get("problems", []))
    return lines


def targets(results: dict[str, Any]) -> list[tuple[str, str, bool | None]]:
    """The issue's targets: (target, what this run measured, met?)."""
    rows: list[tuple[str, str, bool | None]] = []

    def add(target: str, value: float | None, fmt: str, test: Callable[[float], bool]) -> None:
        if value is None:
            rows.append((target, "not measured", None))
        else:
            rows.append((target, fmt.format(value), test(value)))

    limits = {"redis": 1.0, "amqp": 2.0}
    n = results["meta"]["sizes"]["fanout"]
    for broker, name in BROKERS.items():
        systems = _of_broker(results, broker)
        ours = next((v for v in systems.values() if v["label"] == "aq"), None)
        if ours is None:
            continue
        peers = [
            v
            for v in systems.values()
            if v["label"] != "aq" and not v["ceiling"] and not v.get("variant")
        ]
        ceiling = next((v for v in systems.values() if v["ceiling"]), None)
        drain = _median(ours, "drain_per_s")
        peer_drains = [d for d in (_median(p, "drain_per_s") for p in peers) if d]
        best = max(peer_drains, default=None)
        add(
            f"{name}: drain ≥ 2× the fastest peer",
            drain / best if drain and best else None,
            "{:.2f}×",
            lambda r: r >= 2,
        )
        top = _median(ceiling, "drain_per_s") if ceiling else None
        add(
            f"{name}: drain ≥ 50% of the bare client",
            drain / top if drain and top else None,
            "{:.0%}",
            lambda r: r >= 0.5,
        )
        p50 = _median(ours, "p50_ms")
        limit = limits[broker]
        floor = _median(ceiling, "p50_ms") if ceiling else None
        shown = "{:.2f} ms" + (f" (bare client: {floor:.2f} ms)" if floor else "")
        add(f"{name}: round trip p50 < {limit:g} ms", p50, shown, limit.__gt__)
        peer_p50 = [x for x in (_median(p, "p50_ms") for p in peers) if x]
        lowest = min(peer_p50, default=None)
        add(
            f"{name}: round trip p50 below every peer's",
            p50 / lowest if p50 and lowest else None,
            "{:.2f}× the lowest peer's",
            lambda r: r < 1,
        )
        add(
            f"{name}: fan-out of {n:,} × sleep(1) ≤ 1.5 s",
            _median(ours, "fanout_s"),
            "{:.2f} s",
            lambda v: v <= 1.5,
        )
        add(
            f"{name}: worker RSS in fan-out < 150 MB",
            _median(ours, "fanout_rss_mb"),
            "{:.0f} MB",
            lambda v: v < 150,
        )
        for variant in (v for v in systems.values() if v.get("variant")):
            varied = _median(variant, "drain_per_s")
            feature = variant["label"].removeprefix("aq + ")
            if feature == "global_rate_limit":
                feature += " (never binding)"
            least: float | None = variant.get("target", 0.8)
            ratio = varied / drain if varied and drain else None
            if least is None:  # reported, not judged
                add(f"{name}: drain with {feature}, as a share of plain aq's", ratio, "{:.0%}",
                    lambda r: True)  # fmt: skip
                continue
            add(
                f"{name}: drain with {feature} ≥ {least:.0%} of plain aq's",
                ratio,
                "{:.0%}",
                functools.partial(operator.le, least),
            )
            varied_p50 = _median(variant, "p50_ms")
            if varied_p50 is not None:  # a variant that also measures the round trip
                most = 2 - least
                add(
                    f"{name}: round trip p50 with {feature} ≤ {most:.0%} of plain aq's",
                    varied_p50 / p50 if p50 else None,
                    "{:.0%}",
                    functools.partial(operator.ge, most),
                )
    return rows


def _against_previous(results: dict[str, Any], previous: dict[str, Any] | None) -> list[str]:
    if previous is None:
        return ["No earlier run to compare with."]
    lines = [
        f"aq against the previous run in this file ({previous['meta']['date']}); "
        f"a change for the worse of more than {REGRESSION:.0%} is marked **regressed**.",
        "",
        "| broker | figure | before | now | change |",
        "| --- | --- | ---: | ---: | ---: |",
    ]
    for name, entry in results["systems"].items():
        before = previous["systems"].get(name)
        if not (entry["label"] == "aq" or entry.get("variant")) or before is None:
            continue
        for key, (label, fmt, higher) in METRICS.items():
            now, then = _median(entry, key), _median(before, key)
            if now is None or then is None:
                continue
            change = now / then - 1
            worse = -change if higher else change
            mark = " **regressed**" if worse > REGRESSION else ""
            where = BROKERS[entry["broker"]]
            if entry.get("variant"):
                where += f" ({entry['label']})"
            lines.append(
                f"| {where} | {label} | {fmt.format(then)} "
                f"| {fmt.format(now)} | {change:+.0%}{mark} |"
            )
    return lines


def markdown(results: dict[str, Any], previous: dict[str, Any] | None) -> str:
    meta = results["meta"]
    sizes = meta["sizes"]
    budgets = meta["budgets"]
    servers = ", ".join(f"{k} {v}" for k, v in meta["servers"].items())
    lines = [
        "# aq and its peers, one run of `make bench`",
        "",
        f"{meta['date']} · {meta['machine']} · Python {meta['python']} · {servers} · "
        f"{meta['repeat']} runs each, median (min–max) · {meta['seconds']} s in all.",
        "",
        f"- **drain**: {sizes['drain']:,} no-op tasks enqueued with no worker running (the "
        "enqueue rate: 100 sends in flight), then one worker process started; tasks/s from "
        "its first completion to its last.",
        f"- **round trip**: {sizes['round_trip']:,} sequential enqueue-and-await-result of a "
        "no-op against an idle worker.",
        f"- **fan-out**: {sizes['fanout']:,} tasks of `await asyncio.sleep(1)` sent to a "
        "running worker; from the first enqueue to the last completion (ideal: 1 s).",
        "- **of ceiling**: the drain as a share of the bare client library's on the same broker.",
        "- **worker CPU per task**: the worker process's CPU time (user + system) over the "
        "drain, per task: what the drain costs, and less sensitive than a rate to what else "
        "the machine is doing.",
        f"- **Time budgets** keep the whole run short: a drain is timed over the tasks done in "
        f"its first {budgets['drain']:g} s, a round trip samples for at most "
        f"{budgets['round_trip']:g} s, and a fan-out unfinished after {budgets['fanout']:g} s "
        "shows how many tasks it had done. A figure over fewer tasks says so.",
        "- Every run: producer and worker in separate processes, the broker flushed first.",
        "",
    ]
    for broker, name in BROKERS.items():
        if _of_broker(results, broker):
            lines += [f"## {name}", "", *_table(results, broker), ""]
    lines += ["## Targets", "", "| target | this run | met |", "| --- | ---: | --- |"]
    for target, value, met in targets(results):
        lines.append(f"| {target} | {value} | {'–' if met is None else 'yes' if met else 'no'} |")
    lines += ["", "## Against the last landed run", "", *_against_previous(results, previous), ""]
    return "\n".join(lines)


def plot(results: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = [
        ("drain_per_s", "drain, tasks/s (log scale)", True),
        ("p50_ms", "round trip p50, ms (log scale)", True),
        ("fanout_s", "fan-out of sleep(1), s (hatched: unfinished)", False),
        ("fanout_rss_mb", "worker RSS in fan-out, MB", False),
    ]
    size = results["meta"]["sizes"]["fanout"]
    fig, axes = plt.subplots(1, len(panels), figsize=(4.2 * len(panels), 4.2))
    for ax, (key, title, log) in zip(axes, panels, strict=True):
        names, medians, low, high, colours, unfinished = [], [], [], [], [], []
        for entry in results["systems"].values():
            figure = entry.get("figures", {}).get(key)
            if figure is None:
                continue
            names.append(f"{entry['label']}\n{BROKERS[entry['broker']]}")
            medians.append(figure["median"])
            low.append(figure["median"] - figure["min"])
            high.append(figure["max"] - figure["median"])
            aq_colour = "#d62728" if entry["broker"] == "redis" else "#ff7f0e"
            peer_colour = "#1f77b4" if entry["broker"] == "redis" else "#17becf"
            colours.append(aq_colour if entry["label"] == "aq" else peer_colour)
            if entry["ceiling"]:
                colours[-1] = "#7f7f7f"
            done = entry["figures"].get("fanout_done", {}).get("min", size)
            unfinished.append(key == "fanout_s" and done < size)
        bars = ax.bar(range(len(names)), medians, yerr=[low, high], color=colours, capsize=3)
        for bar, cut in zip(bars, unfinished, strict=True):
            if cut:
                bar.set_hatch("//")
        ax.set_xticks(range(len(names)), names, rotation=60, ha="right", fontsize=7)
        ax.set_title(title, fontsize=10)
        if log:
            ax.set_yscale("log")
    fig.suptitle(f"aq and its peers · {results['meta']['date']}", fontsize=11)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
