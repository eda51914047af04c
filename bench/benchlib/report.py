"""From raw runs to figures, ratios and the Markdown tables.

The raw runs (`runs`) are what the measurements returned:
  runs[size][target]["saturation"] = [SaturationRun.as_dict(), ...]
  runs[size][target]["latency"][scenario] = `trellis load` JSON report
The summary holds one value per figure, target and size; the ratios compare
Trellis with the better of HAProxy and nginx for every figure.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from .measure import PERCENTILES, Scenario
from .targets import PEER_KEYS, SIZES

PERCENTILE_LABELS = {"p50": "p50", "p90": "p90", "p99": "p99", "p999": "p99.9", "max": "max"}


@dataclass
class Column:
    key: str
    label: str


def summarize(runs: dict, rss_idle: dict[str, int | None], scenarios: list[Scenario]) -> dict:
    """summary[size][target]: cpu_us_per_req and rps (median of the repeats),
    rss_load_kib (largest), rss_idle_kib, and per scenario the latency
    percentiles, the latency added over direct and the achieved rate."""
    summary: dict = {}
    for size, by_target in runs.items():
        direct = by_target.get("direct", {}).get("latency", {})
        summary[size] = {}
        for target, data in by_target.items():
            sat = data.get("saturation", [])
            entry = {
                "cpu_us_per_req": _median([r["cpu_us_per_req"] for r in sat]),
                "rps": _median([r["rps"] for r in sat]),
                "proxy_core_busy": _median([r["proxy_core_busy"] for r in sat]),
                "proxy_core_total_busy": _median([r["proxy_core_total_busy"] for r in sat]),
                "client_core_busy": _median([r["client_core_busy"] for r in sat]),
                "rss_load_kib": max((r["rss_max_kib"] for r in sat if r["rss_max_kib"]), default=None),
                "rss_idle_kib": rss_idle.get(target),
                "latency_us": {}, "added_us": {}, "achieved_rate": {}, "missed": {},
            }
            for sc in scenarios:
                report = data.get("latency", {}).get(sc.key)
                if report is None:
                    continue
                entry["achieved_rate"][sc.key] = report.get("achieved_rate")
                entry["missed"][sc.key] = int(report["requests"].get("missed", 0))
                lat = _percentiles(report)
                if lat is None:  # nothing completed
                    continue
                entry["latency_us"][sc.key] = lat
                if _percentiles(direct.get(sc.key)) is not None:
                    entry["added_us"][sc.key] = {
                        p: lat[p] - float(direct[sc.key]["latency_us"][p]) for p in PERCENTILES}
            summary[size][target] = entry
    return summary


def _percentiles(report: dict | None) -> dict[str, float] | None:
    values = (report or {}).get("latency_us", {})
    if any(values.get(p) is None for p in PERCENTILES):
        return None
    return {p: float(values[p]) for p in PERCENTILES}


def _median(values: list) -> float | None:
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


# ------------------------------------------------------------------ ratios

def ratio_to_best_peer(by_target: dict[str, float | None], higher_is_better: bool = False,
                       positive_only: bool = False) -> float | None:
    """Trellis ÷ the best peer; None when either side is missing (or, for
    added latency, when the best peer added nothing measurable)."""
    mine = by_target.get("trellis")
    peers = [by_target[k] for k in PEER_KEYS if by_target.get(k) is not None]
    if mine is None or not peers:
        return None
    best = max(peers) if higher_is_better else min(peers)
    if best <= 0 or (positive_only and mine < 0):
        return None
    return mine / best


def ratios(summary: dict, scenarios: list[Scenario]) -> dict:
    """ratios[size][figure], figures named as in the summary; latency ratios
    are of the latency added over direct, keyed "added.<scenario>.<pct>"."""
    out: dict = {}
    for size, by_target in summary.items():
        pick: Callable[[Callable[[dict], float | None]], dict] = \
            lambda get: {t: get(e) for t, e in by_target.items()}
        out[size] = {
            "cpu_us_per_req": ratio_to_best_peer(pick(lambda e: e["cpu_us_per_req"])),
            "rps": ratio_to_best_peer(pick(lambda e: e["rps"]), higher_is_better=True),
            "rss_idle_kib": ratio_to_best_peer(pick(lambda e: e["rss_idle_kib"])),
            "rss_load_kib": ratio_to_best_peer(pick(lambda e: e["rss_load_kib"])),
        }
        for sc in scenarios:
            for p in PERCENTILES:
                out[size][f"added.{sc.key}.{p}"] = ratio_to_best_peer(
                    pick(lambda e: e["added_us"].get(sc.key, {}).get(p)), positive_only=True)
    return out


# ---------------------------------------------------------------- Markdown

def fmt_us(value: float | None) -> str:
    if value is None:
        return "—"
    return f"{value:.1f}" if abs(value) < 10 else f"{value:,.0f}"


def fmt_added(value: float | None) -> str:
    if value is None:
        return ""
    return f" (+{fmt_us(value)})" if value >= 0 else f" (−{fmt_us(-value)})"


def fmt_mib(kib: int | None) -> str:
    return "—" if kib is None else f"{kib / 1024:.1f}"


def fmt_ratio(value: float | None) -> str:
    return "—" if value is None else f"{value:.2f}×"


def markdown_table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |",
             "|" + "|".join("---" if i == 0 else "--:" for i in range(len(header))) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def _with_ratio(columns: list[Column]) -> bool:
    keys = {c.key for c in columns}
    return "trellis" in keys and bool(keys & set(PEER_KEYS))


def _header(columns: list[Column]) -> list[str]:
    header = ["figure"] + [c.label for c in columns]
    return header + (["Trellis ÷ best peer"] if _with_ratio(columns) else [])


def throughput_table(summary: dict, ratio: dict, columns: list[Column]) -> str:
    sizes = list(summary)
    rows = []

    def row(name: str, size: str, field: str, fmt: Callable, proxy_only: bool = True) -> None:
        cells = [name]
        for c in columns:
            value = summary[size][c.key].get(field) if field != "busy" else _busy(summary[size][c.key])
            cells.append("—" if proxy_only and c.key == "direct" else fmt(value))
        if _with_ratio(columns):
            cells.append(fmt_ratio(ratio[size][field]) if field in ratio[size] else "")
        rows.append(cells)

    row("proxy RSS idle (MiB)", sizes[0], "rss_idle_kib", fmt_mib)
    for size in sizes:
        label = SIZES[size].label
        row(f"proxy CPU per request, {label} (µs)", size, "cpu_us_per_req",
            lambda v: "—" if v is None else f"{v:.2f}")
        row(f"max req/s, {label}", size, "rps",
            lambda v: "—" if v is None else f"{v:,.0f}", proxy_only=False)
        row(f"busy during that run: proxy / its core / client core, {label} (%)", size,
            "busy", lambda v: v, proxy_only=False)
        row(f"proxy RSS under load, {label} (MiB)", size, "rss_load_kib", fmt_mib)
    return markdown_table(_header(columns), rows)


def _busy(entry: dict) -> str:
    """Proxy process / whole proxy core / whole client core, in percent."""
    values = [entry["proxy_core_busy"], entry["proxy_core_total_busy"], entry["client_core_busy"]]
    return " / ".join("—" if v is None else f"{v * 100:.0f}" for v in values)


def latency_table(summary: dict, ratio: dict, size: str, columns: list[Column],
                  scenarios: list[Scenario]) -> str:
    rows = []
    for sc in scenarios:
        for p in PERCENTILES:
            cells = [f"{sc.label}: {PERCENTILE_LABELS[p]}"]
            for c in columns:
                entry = summary[size][c.key]
                value = entry["latency_us"].get(sc.key, {}).get(p)
                added = entry["added_us"].get(sc.key, {}).get(p) if c.key != "direct" else None
                cells.append(fmt_us(value) + fmt_added(added))
            if _with_ratio(columns):
                cells.append(fmt_ratio(ratio[size][f"added.{sc.key}.{p}"]))
            rows.append(cells)
        cells = [f"{sc.label}: achieved req/s"]
        for c in columns:
            entry = summary[size][c.key]
            rate, missed = entry["achieved_rate"].get(sc.key), entry["missed"].get(sc.key)
            cells.append(("—" if rate is None else f"{rate:,.0f}")
                         + (f" ({missed:,} missed)" if missed else ""))
        if _with_ratio(columns):
            cells.append("")
        rows.append(cells)
    return markdown_table(_header(columns), rows)


def spread_table(runs: dict, columns: list[Column]) -> str:
    """Every saturation repeat, so the run-to-run spread is visible."""
    rows = []
    for size, by_target in runs.items():
        for c in columns:
            sat = by_target[c.key]["saturation"]
            cpu = [r["cpu_us_per_req"] for r in sat if r["cpu_us_per_req"] is not None]
            rps = [r["rps"] for r in sat]
            rows.append([f"{c.label}, {SIZES[size].label}",
                         " / ".join(f"{v:.2f}" for v in cpu) or "—", _spread(cpu),
                         " / ".join(f"{v:,.0f}" for v in rps), _spread(rps)])
    return markdown_table(["target", "CPU µs per request, each run", "spread",
                           "req/s, each run", "spread"], rows)


def _spread(values: list[float]) -> str:
    """(max − min) ÷ median, in percent."""
    if len(values) < 2:
        return "—"
    return f"{(max(values) - min(values)) / statistics.median(values) * 100:.1f} %"


def failures(runs: dict, columns: list[Column], scenarios: list[Scenario]) -> list[str]:
    labels = {c.key: c.label for c in columns} | {sc.key: sc.label for sc in scenarios}
    found = []
    for size, by_target in runs.items():
        for target, data in by_target.items():
            for i, r in enumerate(data.get("saturation", []), 1):
                if r["failed"]:
                    found.append(f"{labels[target]}, {SIZES[size].label}, saturation run {i}: "
                                 f"{r['failed']} of {r['requests']} requests failed")
            for key, report in data.get("latency", {}).items():
                if report["failed"]:
                    found.append(f"{labels[target]}, {SIZES[size].label}, {labels[key]}: "
                                 f"{report['failed']} requests failed "
                                 f"(errors: {report.get('errors', {})}, "
                                 f"status: {report.get('status', {})})")
    return found


def disturbed(runs: dict, columns: list[Column], scenarios: list[Scenario],
              limit: float) -> list[str]:
    """Runs that other work on the machine disturbed even after the retries."""
    labels = {c.key: c.label for c in columns} | {sc.key: sc.label for sc in scenarios}
    found = []
    for size, by_target in runs.items():
        for target, data in by_target.items():
            measured = [(f"saturation run {i}", r) for i, r in enumerate(data["saturation"], 1)]
            measured += [(labels[key], r) for key, r in data["latency"].items()]
            for name, r in measured:
                if r.get("foreign_cores", 0) > limit:
                    found.append(f"{labels[target]}, {SIZES[size].label}, {name}: other processes "
                                 f"used {r['foreign_cores']:.0%} of a core")
    return found


def markdown(runs: dict, summary: dict, ratio: dict, columns: list[Column],
             scenarios: list[Scenario], settings: dict) -> str:
    parts = [
        "### Throughput, CPU and memory",
        f"Saturation: `h2load --h1 -c 50 -t 1 -n {settings['saturation_requests']:,}`, keep-alive, "
        f"median of {settings['repeats']} run(s). CPU and RSS are summed over all of a proxy's "
        "processes (nginx: master and worker).",
        "",
        throughput_table(summary, ratio, columns),
    ]
    for size in summary:
        parts += [
            "",
            f"### Latency, {SIZES[size].label} responses (µs; in brackets: added over direct)",
            f"`trellis load`, {settings['latency_duration_s']:g} s per row group; open-loop rows "
            "use a fixed arrival rate, the sequential rows one connection in a closed loop. "
            "The ratio column compares the latency added over direct.",
            "",
            latency_table(summary, ratio, size, columns, scenarios),
        ]
    parts += ["", "### Saturation runs, one by one", "", spread_table(runs, columns)]
    problems = failures(runs, columns, scenarios)
    if problems:
        parts += ["", "### Failed requests", ""] + [f"- {p}" for p in problems]
    # Only runs measured with retries are checked: a short run's CPU times are
    # too coarse (10 ms ticks) to tell other work from ours.
    noisy = disturbed(runs, columns, scenarios, settings["foreign_limit"])
    if noisy and settings["attempts"] > 1:
        parts += ["", "### Disturbed runs",
                  "Other work on the machine ran during these measurements even after "
                  f"{settings['attempts']} attempts; their figures are less reliable.", ""]
        parts += [f"- {n}" for n in noisy]
    if _with_ratio(columns):
        parts += ["", "Ratios are Trellis ÷ the better of HAProxy and nginx for that figure: "
                  "below 1× is better for everything but req/s, where above 1× is better."]
    return "\n".join(parts) + "\n"


def put_section(results: Path, text: str) -> None:
    """Puts `text` (a "## " section) in `results` in place of the section
    with the same heading, or at the end when there is none."""
    doc = results.read_text() if results.exists() else "# Benchmark results\n"
    heading = text.split("\n", 1)[0]
    start = doc.find(heading)
    if start < 0:
        doc = doc.rstrip("\n") + "\n\n" + text
    else:
        end = doc.find("\n## ", start + len(heading))
        doc = doc[:start] + text + (doc[end + 1:] if end >= 0 else "")
    results.write_text(doc)
