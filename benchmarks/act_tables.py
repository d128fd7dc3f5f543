"""Tables of ``benchmarks/activations.py``: training rows (time, x SiLU, clones, memory, references, eager blocks,
compile=true), the eval table (fuse(), the plain formula) and the contention table (ratios at each number of CPU burners)."""

from __future__ import annotations

import statistics

from benchmarks import harness

__all__ = ["contention_table", "fmt", "fused_table", "table"]


def fused_table(rows: list[dict]) -> str:
    lines = [["activation", "eval ms", "x SiLU [range]", "fused ms", "fused/unfused [range]", "max rel diff",
              "plain ms", "ours/plain [range]"]]
    for r in rows:
        lines.append([r["name"], f"{r['ms']:.2f}", harness.spread(r["x_silu_runs"]), f"{r['fused_ms']:.2f}",
                      harness.spread(r["fused_runs"]), f"{r['err']:.1e}", fmt(r.get("plain_ms"), ".2f"),
                      harness.spread(r.get("plain_runs", []))])
    widths = [max(len(l[i]) for l in lines) for i in range(len(lines[0]))]
    out = ["  ".join(v.rjust(widths[i]) if i else v.ljust(widths[i]) for i, v in enumerate(l)) for l in lines]
    out.insert(1, "-" * len(out[0]))
    return "\n".join(out)


def contention_table(by_level: dict[int, list[dict]]) -> str:
    """Per channel-aware activation: ours/ref (and x SiLU) at each contention level, and contended/idle."""
    levels = sorted(by_level)
    head = ["activation"] + [f"ours/ref @{n} burners" for n in levels] + [f"x SiLU @{n}" for n in levels]
    if len(levels) > 1:
        head.append(f"ours/ref @{levels[-1]} / @{levels[0]}")
    lines = [head]
    for row0 in by_level[levels[0]]:
        if "over_ref_runs" not in row0:
            continue
        rows = [next(r for r in by_level[n] if r["name"] == row0["name"]) for n in levels]
        line = [row0["name"]] + [harness.spread(r["over_ref_runs"]) for r in rows]
        line += [harness.spread(r["x_silu_runs"]) for r in rows]
        if len(levels) > 1:
            line.append(f"{statistics.median(rows[-1]['over_ref_runs']) / statistics.median(rows[0]['over_ref_runs']):.2f}")
        lines.append(line)
    widths = [max(len(l[i]) for l in lines) for i in range(len(head))]
    out = ["  ".join(v.rjust(widths[i]) if i else v.ljust(widths[i]) for i, v in enumerate(l)) for l in lines]
    out.insert(1, "-" * len(out[0]))
    return "\n".join(out)


def fmt(v, spec):
    return "-" if v is None else format(v, spec)


def table(rows: list[dict], with_memory: bool, with_compile: bool, with_eager: bool = False) -> str:
    silu_ms = next((r["ms"] for r in rows if r["name"] == "silu"), None)
    head = ["activation", "fwd+bwd ms", "x SiLU [range of runs]", "clones [range]"]
    if with_memory:
        head += ["peak MiB", "peak x SiLU", "kept maps"]
    head += ["ref ms", "ours/ref [range]", "vec ms", "ours/vec [range]", "ref peak MiB", "ref kept", "max rel diff"]
    if with_eager:
        head += ["eager clones", "fused/eager [range]"]
    if with_compile:
        head += ["compiled ms", "x SiLU", "clones", "1st call s"] + (["peak x SiLU", "kept maps"] if with_memory else [])
    lines = [head]
    for r in rows:
        line = [r["name"], fmt(r["ms"], ".2f"), harness.spread(r["x_silu_runs"]), harness.spread(r["clones_runs"], ".1f")]
        if with_memory:
            line += [fmt(r.get("peak_mib"), ".1f"), fmt(r.get("peak_x_silu"), ".2f"), fmt(r.get("kept_maps"), ".2f")]
        ref, vec = r.get("ref_ms"), r.get("vec_ms")
        line += [
            fmt(ref, ".2f"),
            harness.spread(r.get("over_ref_runs", [])),
            fmt(vec, ".2f"),
            harness.spread(r.get("over_vec_runs", [])),
            fmt(r.get("ref_peak_mib"), ".1f"),
            fmt(r.get("ref_kept_maps"), ".2f"),
            fmt(r.get("err"), ".1e"),
        ]
        if with_eager:
            line += [harness.spread(r.get("eager_clones_runs", []), ".1f"), harness.spread(r.get("over_eager_runs", []))]
        if with_compile:
            c = r.get("compiled_ms")
            line += [fmt(c, ".2f"), fmt(c / silu_ms if c and silu_ms else None, ".2f"),
                     harness.spread(r.get("compiled_clones_runs", []), ".1f"), fmt(r.get("compile_s"), ".1f")]
            if with_memory:
                line += [fmt(r.get("compiled_peak_x_silu"), ".2f"), fmt(r.get("compiled_kept_maps"), ".2f")]
        lines.append(line)
    widths = [max(len(str(l[i])) for l in lines) for i in range(len(head))]
    out = ["  ".join(str(v).rjust(widths[i]) if i else str(v).ljust(widths[i]) for i, v in enumerate(l)) for l in lines]
    out.insert(1, "-" * len(out[0]))
    return "\n".join(out)
