"""The sweep's comparison table: one row per planned run, sorted by mAP50-95 with the delta against the silu
baseline, written as ``results.csv`` and ``results.md`` (atomically, regenerated from the records)."""

from __future__ import annotations

import csv
import io

from ..io import atomic_write_text
from ..tables import is_finite, markdown_table
from .plan import SweepFolder, SweepRun

TABLE_COLUMNS = [  # (csv key, markdown header)
    ("act", "act"),
    ("status", "status"),
    ("mAP50-95", "mAP50-95"),
    ("mAP50", "mAP50"),
    ("delta_vs_silu", "Δ vs silu"),
    ("params", "params"),
    ("GFLOPs", "GFLOPs@{imgsz}"),
    ("latency_ms", "latency ms"),
    ("epoch_time_s", "epoch time s"),
    ("peak_mem_mb", "peak mem MB"),
    ("error", "error"),
]
RIGHT = (2, 3, 4, 5, 6, 7, 8, 9)  # the number columns
FORMATS = {"mAP50-95": "{:.4f}", "mAP50": "{:.4f}", "GFLOPs": "{:.3g}", "latency_ms": "{:.2f}",
           "epoch_time_s": "{:.1f}", "peak_mem_mb": "{:.0f}"}
STATUS_ORDER = {"finished": 0, "failed": 1}  # then interrupted and pending runs


def _row(run: SweepRun, rec: dict, latency: dict) -> dict:
    finished = rec.get("status") == "finished"
    m = rec.get("metrics") or {}
    return {
        "act": run.label,
        "status": rec.get("status"),
        "mAP50-95": m.get("mAP50-95") if finished else None,
        "mAP50": m.get("mAP50") if finished else None,
        "delta_vs_silu": None,
        "params": rec.get("params"),
        "GFLOPs": rec.get("GFLOPs"),
        "latency_ms": latency.get(run.label) if finished else None,
        "epoch_time_s": rec.get("epoch_time_s"),
        "peak_mem_mb": rec.get("peak_mem_mb"),
        "error": rec.get("error") or "",
    }


def table_rows(runs: list[SweepRun], folder: SweepFolder, latency: dict | None = None) -> list[dict]:
    """One row per planned run (recorded or not), sorted by mAP50-95, with the delta against the silu baseline."""
    latency = (latency or {}).get("ms", {})
    rows, base = [], None
    for r in runs:
        rec = folder.record(r.label)
        if rec is None:
            rec = {"status": "interrupted" if folder.run_dir(r.label).exists() else "pending"}
        rows.append(_row(r, rec, latency))
        if base is None and r.baseline and is_finite(rows[-1]["mAP50-95"]):
            base = rows[-1]
    for row in rows:
        if base is not None and is_finite(row["mAP50-95"]):
            row["delta_vs_silu"] = row["mAP50-95"] - base["mAP50-95"]
    if base is not None:
        base["delta_vs_silu"] = "baseline"
    rows.sort(key=lambda row: (STATUS_ORDER.get(row["status"], 2),
                               -(row["mAP50-95"] if is_finite(row["mAP50-95"]) else -1)))
    return rows


def _fmt(key: str, v) -> str:
    """A cell of the Markdown table."""
    if v is None or v == "":
        return ""
    if key == "delta_vs_silu":
        return "baseline" if v == "baseline" else f"{v:+.4f}"
    if key == "params":
        return f"{int(v):,}"
    if key in FORMATS:
        return FORMATS[key].format(v)
    return str(v)


def _csv_value(v):
    if v is None:
        return ""
    if v == "baseline":
        return 0.0
    return f"{v:.6g}" if isinstance(v, float) else v


def _note(settings: dict, latency: dict | None) -> str:
    """The line above the table: what was trained, and how latency was measured."""
    data = settings.get("data") or "built-in demo"
    note = (f"cfg {settings.get('cfg') or '(train default)'}, data {data}, {settings.get('epochs')} epochs, "
            f"batch {settings.get('batch_size')}, imgsz {settings.get('img_size')}, seed {settings.get('seed')}")
    if latency:
        note += f"; latency: batch 1, fused, median of {latency.get('reps')} on {latency.get('device_name')}"
    return note


def write_tables(rows: list[dict], folder: SweepFolder, settings: dict, latency: dict | None) -> str:
    """Write ``results.csv`` and ``results.md`` atomically; return the Markdown text."""
    out = io.StringIO()
    w = csv.writer(out, lineterminator="\n")
    w.writerow([k for k, _ in TABLE_COLUMNS])
    for row in rows:
        w.writerow([_csv_value(row[k]) for k, _ in TABLE_COLUMNS])
    atomic_write_text(folder.root / "results.csv", out.getvalue())
    heads = [h.format(imgsz=settings.get("img_size")) for _, h in TABLE_COLUMNS]
    cells = [[_fmt(k, row[k]) for k, _ in TABLE_COLUMNS] for row in rows]
    text = "\n".join([f"Sweep: {_note(settings, latency)}", "", *markdown_table(heads, cells, RIGHT)]) + "\n"
    atomic_write_text(folder.root / "results.md", text)
    return text
