"""The benchmark's files: the JSON record, the Markdown report and the PNG plot (the rows' text and
ratios from :mod:`sdk.bench.rows`)."""

from __future__ import annotations

import json
import math
from pathlib import Path

from ..errors import SDKError
from ..files import atomic_file, atomic_write
from .rows import (
    DETAIL_COLUMNS,
    LEFT,
    NO_RATIO,
    SPEED_COLUMNS,
    cells,
    groups,
    label,
    machine_line,
    ratios,
    summary_lines,
    title,
)


def _clean(value):
    """JSON has no NaN or infinity: make sure none slipped in."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_clean(v) for v in value]
    return value


def _key(record: dict) -> tuple:
    return record["kind"], record["backend"], tuple(sorted((record.get("options") or {}).items()))


def write_json(document: dict, path: Path) -> None:
    atomic_write(path, json.dumps(_clean(document), indent=2) + "\n")


def summary_markdown(document: dict) -> list[str]:
    """One line per row, one column per size and batch: throughput and ratio to torch at a glance."""
    parts = groups(document["results"])
    if not parts:
        return []
    heads = [
        f"{size}px" + (f" x{batch}" if batch > 1 or len({b for (_, b), _ in parts}) > 1 else "")
        for (size, batch), _ in parts
    ]
    lines = ["| backend | " + " | ".join(heads) + " |", "|---|" + "---:|" * len(heads)]
    keys: list[tuple] = []
    first: dict[tuple, dict] = {}
    for _, group in parts:
        for r in group:
            if r["latency_ms"] and _key(r) not in keys:
                keys.append(_key(r))
                first[_key(r)] = r
    for key in keys:
        row = []
        for _, group in parts:
            record = next((r for r in group if _key(r) == key and r["latency_ms"]), None)
            if record is None:
                row.append("-")
                continue
            ratio = ratios(group)[id(record)]
            text = f"{record['images_per_s']:.2f} img/s"
            if record["kind"] == "floor":
                text = f"{record['floor_ms']:.1f} ms ({record['sgemm_gflops']:.0f} GFLOP/s)"
            if record["kind"] not in ("reference", "floor") and ratio["torch"] is not None:
                text += f", {ratio['torch']:.2f}x eager"
            if record["kind"] not in ("peer", "floor") and ratio["compiled"] is not None:
                text += f", {ratio['compiled']:.2f}x compiled"
            if ratio["best_torch"] is not None:
                text += f", {ratio['best_torch']:.2f}x best torch"
            if ratio["floor"] is not None:
                text += f", {ratio['floor'] * 100:.0f}% of floor"
            if ratio["overhead"] is not None:
                text += f", {ratio['overhead']:+.1f}% vs raw"
            if record["passed"] is False:
                text += ", FAIL"
            row.append(text)
        lines.append(f"| {label(first[key])} | " + " | ".join(row) + " |")
    return lines


def markdown(document: dict) -> str:
    machine, config = document["machine"], document["config"]
    tol = config["tolerance"]
    lines = [
        f"# Benchmark: {config['model']} x{config['scale']} on every backend",
        "",
        f"- Machine: {machine_line(machine)}",
        f"- Libraries: {', '.join(f'{k} {v}' for k, v in machine['libraries'].items())}",
    ]
    if machine.get("note"):
        lines.append(f"- Note: {machine['note']}")
    lines += [
        f"- Run: warm-up {config['warmup']}, {config['runs']} timed calls per row, {config['schedule']} "
        f"schedule; inputs: {config['inputs']}",
        f"- Reference: torch eager ({config['reference'] or 'unavailable'}); accuracy PASS when uint8 max abs "
        f"diff <= {tol['max_abs_diff']:g} and PSNR >= {tol['min_psnr_db']:g} dB",
        "- `vs torch` (`eager`) = torch eager mean latency / row mean latency (above 1: faster than PyTorch eager); "
        "`vs compiled` = the same against torch channels_last + torch.compile; `vs best torch` = against the fastest "
        "PyTorch row (eager, channels_last, compiled); `of floor` = the fp32 floor's time "
        "(model FLOPs at the rate of numpy's fastest sgemm call in the run) / the row's fastest call; `vs raw` = SDK p50 latency over the bare engine's "
        "(raw: the backend's own engine call on a prepared tensor, no pre/post)",
        f"- Command: `{config['command']}`",
        "",
    ]
    lines += summary_markdown(document) + [""]
    for (size, batch), group in groups(document["results"]):
        found = ratios(group)
        measured = [r for r in group if r["latency_ms"]]
        lines += [f"## {title(config, size, batch)}", ""]
        for columns in (SPEED_COLUMNS, DETAIL_COLUMNS):
            lines += [
                "| " + " | ".join(columns) + " |",
                "|" + "|".join("---" if c in LEFT else "---:" for c in columns) + "|",
            ]
            for record in measured:
                values = cells(record, found.get(id(record), NO_RATIO))
                lines.append("| " + " | ".join(values[c] for c in columns) + " |")
            lines.append("")
        lines += [f"- {line}" for line in summary_lines(group)]
        lines += [
            f"- not measured: **{label(r)}** ({r['device']}): {r['reason']}" for r in group if not r["latency_ms"]
        ]
        lines.append("")
    return "\n".join(lines)


def write_markdown(document: dict, path: Path) -> None:
    atomic_write(path, markdown(document))


COLOURS = {
    "sdk": "#1f77b4",
    "raw": "#ff7f0e",
    "reference": "#7f7f7f",
    "channels_last": "#999999",
    "peer": "#555555",
    "autocast": "#bbbbbb",
    "floor": "#2ca02c",
}


def write_plot(document: dict, path: Path) -> None:
    """Throughput bars, one panel per size and batch, each bar labelled with its ratio to torch."""
    try:
        import matplotlib
    except ImportError as exc:
        raise SDKError(f"--plot needs matplotlib ({exc}): pip install 'deploy-sdk[bench]'") from exc
    matplotlib.use("Agg")  # files only: never open a window, work on a headless machine
    import matplotlib.pyplot as plt

    config, parts = document["config"], groups(document["results"])
    height = max(2.2, 0.45 * max(len([r for r in g if r["latency_ms"]]) for _, g in parts) + 1.2)
    figure, axes = plt.subplots(len(parts), 1, figsize=(9, height * len(parts)), squeeze=False)
    for axis, ((size, batch), group) in zip(axes[:, 0], parts):
        measured = [r for r in group if r["latency_ms"]][::-1]  # matplotlib draws bottom-up
        found = ratios(group)
        values = [r["images_per_s"] for r in measured]
        axis.barh([label(r) for r in measured], values, color=[COLOURS[r["kind"]] for r in measured])
        for y, r in enumerate(measured):
            ratio = found[id(r)]
            text = f" {r['images_per_s']:.2f} img/s"
            if ratio["torch"] is not None and r["kind"] not in ("reference", "floor"):
                text += f"  {ratio['torch']:.2f}x eager"
            if ratio["compiled"] is not None and r["kind"] not in ("peer", "floor"):
                text += f"  {ratio['compiled']:.2f}x compiled"
            if ratio["overhead"] is not None:
                text += f"  ({ratio['overhead']:+.1f}% vs raw)"
            if r["passed"] is False:
                text += "  FAIL"
            axis.text(r["images_per_s"], y, text, va="center", fontsize=8)
        axis.set_xlim(0, max(values, default=1) * 1.6)
        axis.set_title(title(config, size, batch) + " - images/s, higher is better", fontsize=10, loc="left")
        axis.tick_params(axis="y", labelsize=9)
        missing = [f"{label(r)}" for r in group if not r["latency_ms"]]
        if missing:
            axis.set_xlabel("not available here: " + ", ".join(missing), fontsize=8, color="#555555")
    machine = document["machine"]
    figure.suptitle(
        f"{machine['cpu']}, {machine['usable_cores']} cores"
        + (f", {machine['gpus'][0]['name']}" if machine["gpus"] else "")
        + " - sdk bench",
        fontsize=11,
    )
    figure.tight_layout()
    with atomic_file(path) as handle:
        figure.savefig(handle, format=Path(path).suffix.lstrip(".") or "png", dpi=110)
    plt.close(figure)
