"""The benchmark in a terminal: its header, a progress bar while it runs, two tables per size and batch
(the rows' text from :mod:`sdk.bench.rows`)."""

from __future__ import annotations

import contextlib

from .rows import (
    DETAIL_COLUMNS,
    LEFT,
    NO_RATIO,
    SPEED_COLUMNS,
    cells,
    label,
    machine_line,
    ratios,
    summary_lines,
    title,
)


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
