"""The mesh benchmark's Markdown section: latency added over direct, CPU per
1,000 req/s and RSS of the sidecars, the Trellis ÷ best peer ratios and the
design targets for the mesh path.

The raw runs have the shape bench/run.py uses (runs[size][target]["latency"]
[scenario] = a `trellis load` report), with what the sidecars used added to
each report by mesh.measured_run; report.summarize and report.ratios give
the latency figures.
"""

from __future__ import annotations

from typing import Callable

from . import report
from .measure import Scenario
from .mesh import SIDES, cpu_per_krps
from .report import Column, fmt_added, fmt_mib, fmt_ratio, fmt_us, ratio_to_best_peer
from .targets import PEER_KEYS, SIZES

# The design targets for the mesh path (bench/README.md, "The figures").
ADDED_P99_US_AT_1000 = 150.0     # mesh path, added p99 at 1,000 req/s, and below both peers
CPU_PER_KRPS_PER_SIDECAR = 0.03  # vCPU per 1,000 req/s, each sidecar, with mTLS
RSS_IDLE_BYTES = 5e6             # sidecar memory: 5 MB idle
RSS_1000_BYTES = 10e6            # … 10 MB at 1,000 req/s


def _when(sc: Scenario) -> str:
    """Where a figure was taken: "at 1,000 req/s", or "flat out"."""
    return f"at {sc.rate:,} req/s" if sc.rate else "flat out"


def _verdict(met: bool | None) -> str:
    return "" if met is None else (": met" if met else ": not met")


def _fmt_cpu(value: float | None) -> str:
    return "—" if value is None else f"{value:.3f}"


def _pair(values: dict[str, float | None], fmt: Callable[[float | None], str]) -> str:
    return " / ".join(fmt(values.get(side)) for side in SIDES)


class _Rows:
    """Builds the table: one row per figure, one cell per target, then the
    ratio and the target."""

    def __init__(self, columns: list[Column]):
        self.columns = columns
        self.with_ratio = "trellis" in {c.key for c in columns} and \
            bool({c.key for c in columns} & set(PEER_KEYS))
        self.rows: list[list[str]] = []

    def add(self, name: str, cells: dict[str, str], ratio: str = "", target: str = "") -> None:
        row = [name] + [cells.get(c.key, "—") for c in self.columns]
        if self.with_ratio:
            row.append(ratio)
        self.rows.append(row + [target])

    def markdown(self) -> str:
        header = ["figure"] + [c.label for c in self.columns]
        if self.with_ratio:
            header.append("Trellis ÷ best peer")
        return report.markdown_table(header + ["design target"], self.rows)


def _proxies(columns: list[Column]) -> list[str]:
    return [c.key for c in columns if c.key != "direct"]


def _latency_rows(t: _Rows, summary: dict, ratio: dict, sc: Scenario) -> None:
    for p in ("p50", "p99"):
        cells = {}
        for c in t.columns:
            entry = summary[c.key]
            value = entry["latency_us"].get(sc.key, {}).get(p)
            added = entry["added_us"].get(sc.key, {}).get(p) if c.key != "direct" else None
            cells[c.key] = fmt_us(value) + fmt_added(added)
        target = ""
        if sc.rate == 1_000 and p == "p99":
            target = (f"≤ +{ADDED_P99_US_AT_1000:.0f}, below both peers"
                      + _verdict(_latency_met(summary, sc)))
        t.add(f"{sc.label}: {p} (µs)", cells, fmt_ratio(ratio[f"added.{sc.key}.{p}"]), target)
    cells = {}
    for c in t.columns:
        rate = summary[c.key]["achieved_rate"].get(sc.key)
        missed = summary[c.key]["missed"].get(sc.key)
        cells[c.key] = ("—" if rate is None else f"{rate:,.0f}") + \
            (f" ({missed:,} missed)" if missed else "")
    t.add(f"{sc.label}: achieved req/s", cells)


def _latency_met(summary: dict, sc: Scenario) -> bool | None:
    """Trellis's added p99 within the bound and below each peer's measured one."""
    def added_p99(key: str) -> float | None:
        return summary.get(key, {}).get("added_us", {}).get(sc.key, {}).get("p99")
    mine = added_p99("trellis")
    if mine is None:
        return None
    peers = [v for v in (added_p99(k) for k in PEER_KEYS) if v is not None]
    return mine <= ADDED_P99_US_AT_1000 and all(mine < v for v in peers)


def _cpu_rows(t: _Rows, by_target: dict, sc: Scenario) -> None:
    reports = {k: by_target[k]["latency"].get(sc.key) or {} for k in _proxies(t.columns)}
    both = {k: cpu_per_krps(r) for k, r in reports.items()}
    limit_both = CPU_PER_KRPS_PER_SIDECAR * len(SIDES)
    mine = both.get("trellis")
    # The CPU targets speak of a steady rate; flat out only compares.
    targets = [f"≤ {limit_both:g} together" + _verdict(None if mine is None else mine <= limit_both)] \
        if sc.rate else []
    h1 = both.get("trellis-h1")
    if mine is not None and h1:
        # The design's other target: HTTP/2 between the sidecars costs less
        # per request than HTTP/1.1 over the same hops.
        targets.append(f"HTTP/2 between sidecars below HTTP/1.1 ({mine / h1:.2f}×)" + _verdict(mine < h1))
    target = "; ".join(targets)
    t.add(f"CPU per 1,000 req/s {_when(sc)}, both sidecars (vCPU)",
          {k: _fmt_cpu(v) for k, v in both.items()}, fmt_ratio(ratio_to_best_peer(both)), target)

    each = {k: {side: cpu_per_krps(r, side) for side in SIDES} for k, r in reports.items()}
    ratios = {side: ratio_to_best_peer({k: v[side] for k, v in each.items()}) for side in SIDES}
    mine_each = each.get("trellis")
    met = None if mine_each is None or None in mine_each.values() else \
        all(v <= CPU_PER_KRPS_PER_SIDECAR for v in mine_each.values())
    t.add("… each sidecar: client / server (vCPU)",
          {k: _pair(v, _fmt_cpu) for k, v in each.items()}, _pair(ratios, fmt_ratio),
          f"≤ {CPU_PER_KRPS_PER_SIDECAR:g} each" + _verdict(met) if sc.rate else "")


def _rss_row(t: _Rows, name: str, values: dict[str, dict[str, int | None]],
             limit_bytes: float | None) -> None:
    ratios = {side: ratio_to_best_peer({k: v.get(side) for k, v in values.items()})
              for side in SIDES}
    target = ""
    if limit_bytes is not None:
        mine = values.get("trellis")
        met = None if not mine or None in mine.values() else \
            all(kib * 1024 <= limit_bytes for kib in mine.values())
        target = (f"≤ {limit_bytes / 1e6:g} MB ({limit_bytes / 2**20:.1f} MiB) each"
                  + _verdict(met))
    t.add(name, {k: _pair(v, fmt_mib) for k, v in values.items()}, _pair(ratios, fmt_ratio),
          target)


def mesh_table(runs: dict, summary: dict, ratio: dict, columns: list[Column],
               scenarios: list[Scenario], rss_idle: dict[str, dict[str, int]], size: str) -> str:
    t = _Rows(columns)
    by_target = runs[size]
    for sc in scenarios:
        _latency_rows(t, summary[size], ratio[size], sc)
    for sc in scenarios:
        _cpu_rows(t, by_target, sc)
    _rss_row(t, "RSS idle, client / server sidecar (MiB)",
             {k: rss_idle.get(k, {}) for k in _proxies(columns)}, RSS_IDLE_BYTES)
    for sc in scenarios:
        values = {}
        for k in _proxies(columns):
            sidecars = (by_target[k]["latency"].get(sc.key) or {}).get("sidecars", {})
            values[k] = {side: sidecars.get(side, {}).get("rss_max_kib") for side in SIDES}
        _rss_row(t, f"RSS {_when(sc)} (largest sampled), client / server sidecar (MiB)",
                 values, RSS_1000_BYTES if sc.rate == 1_000 else None)
    for sc in scenarios:
        cells = {}
        for k in _proxies(columns):
            opened = (by_target[k]["latency"].get(sc.key) or {}).get("connections_opened")
            cells[k] = "—" if opened is None else f"{opened['mesh']} / {opened['upstream']}"
        t.add(f"connections opened during the run {_when(sc)}: "
              "sidecar → sidecar / sidecar → upstream", cells)
    return t.markdown()


def section(meta: dict, settings: dict, runs: dict, summary: dict, ratio: dict,
            columns: list[Column], scenarios: list[Scenario],
            rss_idle: dict[str, dict[str, int]]) -> str:
    """The Markdown section: how it ran, the table per size, then what failed
    or was disturbed."""
    v = meta["versions"]
    parts = [
        "## Mesh path: client → sidecar → mTLS → sidecar → upstream",
        "",
        f"- machine: {meta['cpu']}, {meta['cores']} cores; {meta['os']}, kernel {meta['kernel']}",
        f"- peers: HAProxy {v['haproxy']}, nginx {v['nginx']}; Trellis: commit "
        f"{meta['trellis_commit']}, {meta['trellis_build']} build",
        f"- run: {meta['date']}, {meta['duration_s']:.0f} s in all"
        + (" (quick: a check that it works, not a measurement)" if meta.get("mode") == "quick" else ""),
        "",
        "```sh",
        meta["command"],
        "```",
        "",
        "Method and how to read it: [README.md](README.md#mesh-path-mtls-between-two-sidecars).",
    ]
    for size in summary:
        parts += [
            "",
            f"### {SIZES[size].label} responses",
            "Two sidecars of each kind, both on core 0 with one thread or worker each; the "
            f"client (`trellis load`, {settings['connections']} keep-alive connections, open loop, "
            f"{settings['duration_s']:g} s per run) and the upstream on core 1. Between the "
            "sidecars TLS 1.3 with client certificates (ECDSA P-256, the same files for all "
            "of them), carrying HTTP/1.1 for HAProxy and nginx, HTTP/2 for Trellis (its "
            "sidecars' default) and HTTP/1.1 for Trellis with `mesh_protocol: downstream`, "
            f"pooled on both hops after {settings['warmup_s']:g} s of warm-up at "
            "the run's rate. Latency in µs, in brackets added over direct; CPU is both sidecars' CPU "
            "time over a run ÷ (achieved req/s ÷ 1,000 × its seconds); RSS is summed over a "
            "sidecar's processes (nginx: master and worker).",
            "",
            mesh_table(runs, summary, ratio, columns, scenarios, rss_idle, size),
        ]
    problems = report.failures(runs, columns, scenarios)
    if problems:
        parts += ["", "### Failed requests", ""] + [f"- {p}" for p in problems]
    noisy = report.disturbed(runs, columns, scenarios, settings["foreign_limit"])
    if noisy and settings["attempts"] > 1:
        parts += ["", "### Disturbed runs",
                  "Other work on the machine ran during these measurements even after "
                  f"{settings['attempts']} attempts; their figures are less reliable.", ""]
        parts += [f"- {n}" for n in noisy]
    parts += ["", "Ratios are Trellis ÷ the better of HAProxy and nginx for that figure (for "
              "latency, of the latency added over direct; for client / server cells, side by "
              "side): below 1× is better. The design targets are judged on Trellis's figure."]
    return "\n".join(parts) + "\n"
