"""What a benchmark's result rows say: their labels, the ratios between them, and each cell as text
(the terminal table, the Markdown and the plot all read them from here).

Ratios are derived here, never stored: ``vs torch`` = torch eager's mean latency / the row's (above 1
is faster than the PyTorch eager reference); ``vs compiled`` = the same against channels_last +
torch.compile; ``of floor`` = the fp32 floor's time / the row's fastest call (the fraction of the
machine's sgemm rate the row reaches on the model's FLOPs, both sides undisturbed: sdk.bench.floor);
``vs raw`` = the SDK row's median latency over the bare
engine's, as a percentage overhead (medians: a noisy shared machine skews means).
"""

from __future__ import annotations

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
            "floor": floor["floor_ms"] / r["latency_ms"]["min"] if floor and r["kind"] != "floor" else None,
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
            f"(numpy sgemm, its fastest call in this run) = {floor['floor_ms']:.1f} ms"
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
            parts.append(f"{ratio['floor'] * 100:.0f}% of the fp32 floor (fastest calls)")
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
