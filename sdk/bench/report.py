"""Showing results: the terminal table with its progress bar, and JSON, Markdown and PNG files.

Ratios are derived here, never stored: ``vs torch`` = torch eager's mean latency / the row's (above 1
is faster than the PyTorch eager reference); ``vs compiled`` = the same against channels_last +
torch.compile; ``of floor`` = the fp32 floor's time / the row's (the fraction of the machine's sgemm
rate the row reaches on the model's FLOPs); ``vs raw`` = the SDK row's median latency over the bare
engine's, as a percentage overhead (medians: a noisy shared machine skews means).
"""

from __future__ import annotations

import contextlib
import json
import math
from pathlib import Path

from ..errors import SDKError
from ..files import atomic_file, atomic_write

LABELS = {
    "sdk": "{}",
    "raw": "raw {}",
    "reference": "{} eager (reference)",
    "channels_last": "{} channels_last",
    "peer": "{} channels_last+compile",
    "autocast": "{} fp16 autocast",
    "floor": "fp32 floor ({})",
}
# Two tables, so that each fits a terminal: how fast, then where the time goes and how right.
SPEED_COLUMNS = (
    "backend",
    "device",
    "load s",
    "first ms",
    "mean ms",
    "p50 ms",
    "p90 ms",
    "min ms",
    "img/s",
    "vs torch",
    "vs compiled",
    "vs best torch",
    "of floor",
    "vs raw",
)
DETAIL_COLUMNS = (
    "backend",
    "compile s",
    "pre ms",
    "infer ms",
    "post ms",
    "peak RSS MB",
    "max diff",
    "PSNR dB",
    "accuracy",
)
LEFT = {"backend", "device", "accuracy"}
OVERHEAD_TARGET_PCT = 3.0
# The fp32 PyTorch rows: "vs best torch" is against the fastest (the fp16 autocast row is compared with them, not among them)
TORCH_KINDS = ("reference", "channels_last", "peer")  # the PyTorch rows: "vs best torch" is against the fastest


def label(record: dict) -> str:
    text = LABELS[record["kind"]].format(record["backend"])
    options = record.get("options") or {}
    if options:
        text += " (" + ", ".join(f"{k}={v}" for k, v in options.items()) + ")"
    return text


def _key(record: dict) -> tuple:
    return record["kind"], record["backend"], tuple(sorted((record.get("options") or {}).items()))


def groups(results: list[dict]) -> list[tuple[tuple[int, int], list[dict]]]:
    """Results per (size, batch), in the order they ran."""
    found: dict[tuple[int, int], list[dict]] = {}
    for record in results:
        found.setdefault((record["size"], record["batch"]), []).append(record)
    return list(found.items())


def ratios(group: list[dict]) -> dict[int, dict[str, float | None]]:
    """id(record) -> {"torch", "compiled", "floor", "overhead"} for one size and batch: speed vs torch
    eager and vs compiled torch, fraction of the fp32 floor, SDK overhead % vs the raw engine."""
    measured = [r for r in group if r["latency_ms"]]
    torch = next((r for r in measured if r["kind"] == "reference"), None)
    compiled = next((r for r in measured if r["kind"] == "peer"), None)
    floor = next((r for r in measured if r["kind"] == "floor" and r.get("floor_ms")), None)
    torches = [r["latency_ms"]["mean"] for r in measured if r["kind"] in TORCH_KINDS]
    raw = {r["backend"]: r for r in measured if r["kind"] == "raw"}
    out = {}
    for r in measured:
        mean = r["latency_ms"]["mean"]
        base = raw.get(r["backend"]) if r["kind"] == "sdk" and not r.get("options") else None
        out[id(r)] = {
            "torch": torch["latency_ms"]["mean"] / mean if torch else None,
            "compiled": compiled["latency_ms"]["mean"] / mean if compiled else None,
            "best_torch": min(torches) / mean if torches and r["kind"] not in TORCH_KINDS else None,
            "floor": floor["floor_ms"] / mean if floor and r["kind"] != "floor" else None,
            "overhead": (r["latency_ms"]["p50"] / base["latency_ms"]["p50"] - 1) * 100 if base else None,
            "overhead_ms": r["latency_ms"]["p50"] - base["latency_ms"]["p50"] if base else None,
        }
    return out


NO_RATIO = {"torch": None, "compiled": None, "best_torch": None, "floor": None, "overhead": None, "overhead_ms": None}


def _num(value, digits: int = 1) -> str:
    return "-" if value is None else f"{value:,.{digits}f}"


def _ms(value) -> str:
    if value is None:
        return "-"
    return f"{value:,.1f}" if value >= 10 else f"{value:.2f}"


def cells(record: dict, ratio: dict) -> dict[str, str]:
    """One row's strings by column; the same strings serve the terminal and Markdown."""
    lat, stages = record["latency_ms"], record["stages_ms"] or {}
    if record["kind"] == "floor":
        accuracy = "-"
    elif record["passed"] is None and record["max_abs_diff"] is not None:
        accuracy = "not judged (reduced precision)"
    elif record["passed"] is None:
        accuracy = "no reference"
    elif record["kind"] == "reference":
        accuracy = "reference"
    else:
        accuracy = "PASS" if record["passed"] else "FAIL"
    psnr = (
        "-" if record["max_abs_diff"] is None else ("inf" if record["psnr_db"] is None else f"{record['psnr_db']:.1f}")
    )
    lat = lat or {}
    return {
        "backend": label(record),
        "device": record["device"] or "-",
        "load s": _num(record["load_s"], 2),
        "first ms": _ms(record["first_ms"]),
        "mean ms": _ms(lat.get("mean")),
        "p50 ms": _ms(lat.get("p50")),
        "p90 ms": _ms(lat.get("p90")),
        "p99 ms": _ms(lat.get("p99")),
        "min ms": _ms(lat.get("min")),
        "img/s": _num(record["images_per_s"], 2),
        "vs torch": "-" if ratio["torch"] is None else f"{ratio['torch']:.2f}x",
        "vs compiled": "-" if ratio["compiled"] is None else f"{ratio['compiled']:.2f}x",
        "vs best torch": "-" if ratio["best_torch"] is None else f"{ratio['best_torch']:.2f}x",
        "of floor": "-" if ratio["floor"] is None else f"{ratio['floor'] * 100:.0f}%",
        "vs raw": "-" if ratio["overhead"] is None else f"{ratio['overhead']:+.1f}%",
        "compile s": _num(record.get("compile_s"), 1),
        "pre ms": _ms(stages.get("pre")),
        "infer ms": _ms(stages.get("infer")),
        "post ms": _ms(stages.get("post")),
        "peak RSS MB": _num(record["peak_rss_mb"], 0),
        "max diff": _num(record["max_abs_diff"], 0),
        "PSNR dB": psnr,
        "accuracy": accuracy,
    }


def title(config: dict, size: int, batch: int) -> str:
    out = size * config["scale"]
    return f"{config['model']} x{config['scale']}: {size}x{size} -> {out}x{out}, batch {batch}"


def machine_line(machine: dict) -> str:
    gpus = ", ".join(f"{g['name']} ({g['memory_gib']} GiB)" for g in machine["gpus"]) or "no GPU"
    features = ", ".join(machine["cpu_features"]) or "no AVX2"
    load = machine.get("load_average")
    return (
        f"{machine['cpu']}: {machine['physical_cores']} physical / {machine['logical_cores']} logical cores "
        f"({machine['usable_cores']} usable; {features}), {machine['memory_gib']} GiB RAM, {gpus}; "
        f"{machine['os']}, Python {machine['python']}" + (f"; load average at start {load[0]}" if load else "")
    )


def prepost_share(record: dict) -> float | None:
    """The SDK's own work (pre + post) as a percentage of pre + infer + post, from one set of calls.

    Unlike the ratio of two rows' latencies this does not depend on what else the machine was doing
    between calls, so it is the steadier measure of the SDK's per-call overhead.
    """
    stages = record.get("stages_ms") or {}
    if any(stages.get(k) is None for k in ("pre", "infer", "post")):
        return None
    total = stages["pre"] + stages["infer"] + stages["post"]
    return 100.0 * (stages["pre"] + stages["post"]) / total if total else None


def summary_lines(group: list[dict]) -> list[str]:
    """The headline ratios of one size/batch, in words."""
    found = ratios(group)
    lines = []
    floor = next((r for r in group if r["kind"] == "floor" and r.get("floor_ms")), None)
    if floor:
        lines.append(
            f"fp32 floor: {floor['gflop']:.2f} GFLOP per call at {floor['sgemm_gflops']:.0f} GFLOP/s "
            f"(numpy sgemm, measured in this run) = {floor['floor_ms']:.1f} ms"
        )
    for r in group:
        if r["kind"] not in ("sdk", "peer") or id(r) not in found:
            continue
        ratio = found[id(r)]
        parts = [f"{label(r)}: {r['images_per_s']:.2f} img/s"]
        if ratio["torch"] is not None:
            parts.append(f"{ratio['torch']:.2f}x torch eager")
        if ratio["compiled"] is not None and r["kind"] != "peer":
            parts.append(f"{ratio['compiled']:.2f}x torch compiled")
        if ratio["best_torch"] is not None:
            parts.append(f"{ratio['best_torch']:.2f}x the fastest torch row")
        if ratio["floor"] is not None:
            parts.append(f"{ratio['floor'] * 100:.0f}% of the fp32 floor")
        if ratio["overhead"] is not None:
            verdict = "within" if ratio["overhead"] <= OVERHEAD_TARGET_PCT else "over"
            parts.append(
                f"SDK vs raw engine {ratio['overhead']:+.1f}% / {ratio['overhead_ms']:+.2f} ms "
                f"(p50 latency; {verdict} the {OVERHEAD_TARGET_PCT:g}% target)"
            )
        share = prepost_share(r)
        if share is not None and r["kind"] == "sdk":
            parts.append(f"SDK pre+post {share:.1f}% of the call (timed within the same calls: no row-to-row noise)")
        lines.append(", ".join(parts))
    return lines


class Reporter:
    """The terminal side: header, progress bar while running, a table per size and batch."""

    def __init__(self, quiet: bool = False):
        from rich.console import Console

        self.quiet = quiet
        self.console = Console(quiet=quiet)
        if not self.console.is_terminal:
            # A log file or CI page has no width to honour; rich's default 80 would truncate the tables.
            self.console = Console(quiet=quiet, width=150)

    def header(self, machine: dict, config: dict, tolerance) -> None:
        from rich.markup import escape

        self.console.print(
            f"[bold]sdk bench[/] {escape(config['model'])} x{config['scale']}, sizes "
            f"{config['sizes']}, batch {config['batches']}, warm-up {config['warmup']}, "
            f"{config['runs']} runs, {config['schedule']}"
        )
        self.console.print(escape(machine_line(machine)))
        if machine.get("note"):
            self.console.print(f"note: {escape(machine['note'])}")
        self.console.print(f"accuracy: PASS when {escape(str(tolerance))}")

    @contextlib.contextmanager
    def progress(self, total: int):
        if self.quiet:
            yield lambda description, n: None
            return
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        with Progress(
            TextColumn("{task.description:<32}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=self.console,
            transient=True,
        ) as bar:
            task = bar.add_task("starting", total=total)
            yield lambda description, n: bar.update(task, advance=n, description=description)

    def table(self, group: list[dict], config: dict) -> None:
        from rich.markup import escape
        from rich.table import Table

        size, batch = group[0]["size"], group[0]["batch"]
        found = ratios(group)
        measured = [r for r in group if r["latency_ms"]]
        for columns, caption in ((SPEED_COLUMNS, "latency per call"), (DETAIL_COLUMNS, "time split, memory, accuracy")):
            table = Table(title=f"{title(config, size, batch)}: {caption}", title_justify="left")
            for column in columns:
                table.add_column(column, justify="left" if column in LEFT else "right", no_wrap=column == "backend")
            for record in measured:
                values = cells(record, found.get(id(record), NO_RATIO))
                colour = {"PASS": "green", "FAIL": "red"}.get(values["accuracy"])
                if colour:
                    values["accuracy"] = f"[{colour}]{values['accuracy']}[/]"
                table.add_row(*(values[c] for c in columns))
            self.console.print(table)
        for line in summary_lines(group):
            self.console.print("  " + escape(line))
        for record in group:
            if not record["latency_ms"]:
                self.console.print(f"  [yellow]not measured[/] {escape(label(record))}: {escape(record['reason'])}")

    def note(self, text: str, style: str = "") -> None:
        from rich.markup import escape

        self.console.print(f"[{style}]{escape(text)}[/]" if style else escape(text))


def _clean(value):
    """JSON has no NaN or infinity: make sure none slipped in."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_clean(v) for v in value]
    return value


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
        "(model FLOPs at numpy's measured sgemm rate) / the row's; `vs raw` = SDK p50 latency over the bare engine's "
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
