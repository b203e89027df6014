"""The ``observer`` command: parses options, renders progress and the summary; the work is in engine/ (bench/ for ``observer bench``)."""

from __future__ import annotations

import json
import os
import signal
import sys
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, NoReturn, Optional

from engine.process import tune_for_batch_runs

tune_for_batch_runs()  # before the imports below bring in Polars, whose allocator reads it at import

import typer  # noqa: E402

from engine.config import ConfigError, resolve  # noqa: E402
from engine.pipeline import EtlError, RunSummary, run_etl  # noqa: E402

if TYPE_CHECKING:
    from rich.console import Console

    from engine.status import Status


class _HelpTakesNoValue:
    """``--help`` shown without ``<bool>`` beside it (Typer 0.29 shows a flag's Python type as its value)."""

    def get_help_option(self, ctx):  # type: ignore[no-untyped-def]
        opt = super().get_help_option(ctx)  # type: ignore[misc]
        if opt is not None:
            opt.metavar = ""
        return opt


class _Group(_HelpTakesNoValue, typer.core.TyperGroup):
    pass


class _Command(_HelpTakesNoValue, typer.core.TyperCommand):
    pass


app = typer.Typer(
    cls=_Group, add_completion=False, no_args_is_help=True, help="observer-etl: the Observer archive into trading databases."
)


@cache
def _err() -> Console:
    """stderr as a rich console, imported on first use: a ``--json`` run (cron, the bench, a run with
    nothing new) never loads rich, ~75 ms of its start."""
    from rich.console import Console

    return Console(stderr=True)


class _RichProgress:
    """Files, bytes, lines and rows/s on stderr; only when stderr is a terminal."""

    def __init__(self) -> None:
        from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TimeElapsedColumn

        self.bar = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            DownloadColumn(),
            TextColumn("{task.fields[files]} files · {task.fields[lines]:,} lines · {task.fields[rate]:,.0f} rows/s"),
            TimeElapsedColumn(),
            console=_err(),
            transient=True,
        )
        self.task = self.bar.add_task("etl", total=None, files=0, lines=0, rate=0.0, rows=0)

    def plan(self, files: int, total_bytes: int) -> None:
        self.bar.update(self.task, total=max(total_bytes, 1))

    def note(self, text: str) -> None:
        self.bar.console.print(f"[dim]{text}[/]", highlight=False)

    def advance(self, files: int, nbytes: int, lines: int, rows: int) -> None:
        t = self.bar.tasks[self.task]
        done_rows = t.fields["rows"] + rows
        elapsed = t.elapsed or 1e-9
        self.bar.update(
            self.task, advance=nbytes, files=t.fields["files"] + files, lines=t.fields["lines"] + lines,
            rows=done_rows, rate=done_rows / elapsed,
        )


def _render(summary: RunSummary) -> None:
    from rich.console import Console
    from rich.table import Table

    out = Console()
    d = summary.to_dict()
    out.print(f"[bold]observer etl[/] · run {d['run_id']} · {d['status']} in {d['seconds']:.2f}s", highlight=False)
    files = ", ".join(f"{n} {k}" for k, n in d["files"].items() if n)
    out.print(f"files: {files or 'none'}", highlight=False)
    t = Table()
    for col in ("kind", "lines read", "loaded", "duplicates", "rejected", "held back"):
        t.add_column(col, justify="right" if col != "kind" else "left")
    for kind, c in d["kinds"].items():
        t.add_row(kind, *(f"{c[k]:,}" for k in ("lines_read", "loaded", "duplicates", "rejected", "held_back")))
    t.add_row("[bold]total", *(f"[bold]{d[k]:,}" for k in ("lines_read", "loaded", "duplicates", "rejected", "held_back")))
    out.print(t)
    tt = Table()
    for col in ("table", "inserted", "updated", "deleted"):
        tt.add_column(col, justify="right" if col != "table" else "left")
    for name, c in d["tables"].items():
        tt.add_row(name, f"{c['inserted']:,}", f"{c['updated']:,}", f"{c['deleted']:,}")
    if d["tables"]:
        out.print(tt)
    u = d["universe"]
    out.print(
        f"universe: {u['files_read']} files read, {u['symbols_loaded']} symbols loaded, {u['files_rejected']} files rejected"
    )
    if d["reflagged"]:
        out.print(
            f"quality flags: {sum(d['reflagged'].values()):,} rows flagged again, the holiday list changed on "
            + ", ".join(d["reflagged"]), highlight=False
        )
    if d["rejects_by_reason"]:
        out.print("rejects: " + ", ".join(f"{r} {n:,}" for r, n in d["rejects_by_reason"].items()))
    for w in d["warnings"]:
        _err().print("[yellow]warning:[/] ", end="")
        _err().print(w, markup=False, highlight=False, soft_wrap=True)
    out.print(f"target {d['target']} · staging {d['staging']}")


def _version(value: bool) -> None:
    if value:
        from importlib.metadata import PackageNotFoundError, version

        try:
            print(f"observer-etl {version('observer-etl')}")
        except PackageNotFoundError:  # run from a checkout that was never installed
            print("observer-etl (not installed: pip install -e .)")
        raise typer.Exit()


@app.callback()
def main(
    version: bool = typer.Option(False, "--version", metavar="", callback=_version, is_eager=True, help="Print the version and exit."),
) -> None:
    """observer-etl: the Observer archive into trading databases."""


@app.command(cls=_Command)
def etl(
    source: Optional[str] = typer.Option(None, "--source", metavar="PATH|NAME", help="Archive root, or a name in \\[sources] of observer.toml."),
    target: Optional[str] = typer.Option(None, "--target", metavar="URL|NAME", help="sqlite:///file.db, postgresql://..., or a name in \\[targets] of observer.toml."),
    staging: Optional[str] = typer.Option(None, "--staging", metavar="DIR", help="Directory of the staged Parquet and the manifest."),
    market: Optional[str] = typer.Option(None, "--market", metavar="MARKET", help="Process only this market (parallel per-market runs)."),
    security_master: Optional[str] = typer.Option(None, "--security-master", metavar="CSV", help="CSV symbol,market."),
    holidays: Optional[str] = typer.Option(None, "--holidays", metavar="FILE", help="File of KRX holidays, one YYYY-MM-DD a line."),
    config: Optional[Path] = typer.Option(None, "--config", metavar="FILE", help="observer.toml to use (default: ./observer.toml if present)."),
    unit_size: Optional[str] = typer.Option(
        None, "--unit-size", metavar="SIZE", help="Most new bytes per commit, e.g. 16MB (default 128MB): smaller units lower the peak memory and load slower."
    ),
    as_json: bool = typer.Option(False, "--json", metavar="", help="Print the run summary as one JSON object on stdout."),
) -> None:
    """Load the archive's new lines into the target database, incrementally."""
    # Polars (2.1) installs a SIGINT handler of its own at import, which only sets a flag that its next
    # computation checks, in whichever thread: a Ctrl-C 0.8 s into a 1M run was lost that way and the
    # run went on to the end. Python's own handler is put back: KeyboardInterrupt in the main thread,
    # at the next line of Python.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, _terminate)
    try:
        opts = resolve(source, target, staging, market, security_master, holidays, config, unit_size)
        progress = _RichProgress() if not as_json and _err().is_terminal else None
        if progress is not None:
            with progress.bar:
                summary = run_etl(opts, progress)
        else:
            summary = run_etl(opts)
    except (ConfigError, EtlError) as exc:
        _err().print("[red]error:[/] ", end="")
        _err().print(str(exc), markup=False, highlight=False, soft_wrap=True)
        raise typer.Exit(2) from None
    except KeyboardInterrupt:
        what, code = ("terminated", 143) if _TERMINATED else ("interrupted", 130)
        _err().print(f"[red]{what}:[/] the last commit is intact; run again to continue")
        raise typer.Exit(code) from None
    if as_json:
        sys.stdout.write(json.dumps(summary.to_dict()) + "\n")
    else:
        _render(summary)
    _exit_now(0)


@app.command(cls=_Command)
def status(
    target: Optional[str] = typer.Option(None, "--target", metavar="URL|NAME", help="sqlite:///file.db, postgresql://..., or a name in \\[targets] of observer.toml."),
    staging: Optional[str] = typer.Option(None, "--staging", metavar="DIR", help="Staging directory to report as well (default: the one observer etl would use, if it exists)."),
    config: Optional[Path] = typer.Option(None, "--config", metavar="FILE", help="observer.toml to use (default: ./observer.toml if present)."),
    runs: int = typer.Option(5, "--runs", metavar="N", min=1, max=10_000, help="How many of the newest runs to list."),
    as_json: bool = typer.Option(False, "--json", metavar="", help="Print the status as one JSON object on stdout."),
) -> None:
    """What the target database holds: watermarks, the newest runs, rows, rejects. Changes nothing."""
    from engine.status import read_status
    from staging import manifest

    try:
        opts = resolve(target=target, staging=staging, config=config)
        if staging is not None:  # named: it must be one; the default is shown only where there is one
            if not opts.staging.exists():
                raise ConfigError(f"staging directory {opts.staging} does not exist")
            if not manifest.present(opts.staging):
                raise ConfigError(f"{opts.staging} is not a staging directory of observer etl: it has no _manifest folder")
        state = read_status(opts.target, runs, opts.staging if manifest.present(opts.staging) else None)
    except (ConfigError, EtlError) as exc:
        _err().print("[red]error:[/] ", end="")
        _err().print(str(exc), markup=False, highlight=False, soft_wrap=True)
        raise typer.Exit(2) from None
    if as_json:
        sys.stdout.write(json.dumps(state.to_dict()) + "\n")
    else:
        _render_status(state)
    _exit_now(0)


def _render_status(state: Status) -> None:
    """One line per watermark and per run: they stay whole in a narrow terminal and in a log."""
    from datetime import datetime

    from rich.console import Console

    from engine.normalize import KST_OFFSET

    out = Console(soft_wrap=True, highlight=False)
    d = state.to_dict()

    def when(text: str | None, kst: bool = False) -> str:
        """A UTC time to the second (--json keeps the microseconds); in KST for market time (a watermark)."""
        if not text:
            return "–"
        at = datetime.fromisoformat(text)
        return (at + KST_OFFSET).strftime("%Y-%m-%d %H:%M:%S KST") if kst else at.strftime("%Y-%m-%d %H:%M:%S UTC")

    out.print("[bold]observer status[/] · ", end="")
    out.print(d["target"], markup=False)  # a path may hold '[...]'
    out.print("watermarks:" if d["watermarks"] else "watermarks: none yet")
    for w in d["watermarks"]:
        out.print(
            f"  {w['source_type']} {w['market']}: {when(w['last_processed_ts'], kst=True)}, "
            f"{w['last_processed_file'] or '–'} (run {w['run_id']})", markup=False
        )
    counts = ", ".join(f"{n:,} {s}" for s, n in d["runs_by_status"].items())
    out.print(f"runs: {counts or 'none'}; the newest:" if d["runs"] else "runs: none")
    for r in d["runs"]:
        out.print(
            f"  {r['run_id']} {r['status']} ({r['market_scope']}), started {when(r['started_at'])} on {r['source']}: "
            f"{r['lines_read']:,} lines read = {r['loaded']:,} loaded + {r['duplicates']:,} duplicates + "
            f"{r['rejected']:,} rejected, {r['held_back']:,} held back, {r['commits']:,} commits", markup=False
        )
    out.print("rows: " + (", ".join(f"{name} {n:,}" for name, n in d["tables"].items()) or "no data tables"))
    if d["rejects_by_reason"]:
        out.print("rejects: " + ", ".join(f"{k} {n:,}" for k, n in d["rejects_by_reason"].items()), markup=False)
    for market, days in d["holidays"].items():
        out.print(f"holidays the quality flags of {market} follow: {', '.join(days) or 'none'}", markup=False)
    stg = d["staging"]
    if stg is None:
        return
    out.print(f"staging {stg['path']}:", markup=False)
    for sc in stg["scopes"]:
        c = sc["newest_commit"]
        newest = "no commit yet" if c is None else f"newest commit {c['run_id']} #{c['seq']}, " + (
            "in the database" if sc["in_database"]
            else "NOT in the database: the staging directory of another database, which observer etl refuses"
        )
        out.print(f"  scope {sc['scope']}: {sc['files']:,} files, {sc['consumed_bytes']:,} bytes consumed; {newest}", markup=False)
        if sc["pending"]:
            out.print(f"  interrupted commits (the next run of the scope settles them): {', '.join(sc['pending'])}", markup=False)
    out.print("  parts: " + ", ".join(
        f"{name} {t['partitions']:,} partitions ({t['parts']:,} parts, {t['bytes']:,} bytes)" for name, t in stg["tables"].items()
    ), markup=False)


@app.command(
    context_settings={"allow_extra_args": True, "ignore_unknown_options": True}, add_help_option=False
)
def bench(ctx: typer.Context) -> None:
    """Benchmark observer-etl against its floors and baselines (python -m bench; --help lists its options)."""
    from bench.harness import main as bench_main  # the harness parses its own options, --help included

    raise typer.Exit(bench_main(list(ctx.args), prog="observer bench"))


_TERMINATED: list[bool] = []


def _terminate(signum: int, frame: object) -> None:
    """SIGTERM (a service manager or container stopping the run) stops it the way Ctrl-C does: the
    transaction rolled back and the run marked failed, instead of the process ending on the spot."""
    _TERMINATED.append(True)
    raise KeyboardInterrupt


def _exit_now(code: int) -> NoReturn:
    """Leave without the interpreter's teardown: freeing every module of Polars, pyarrow and NumPy and
    joining their thread pools took ~0.2 s, a fifth of a run with nothing new. By now the run has closed
    its database connection and synced and renamed everything it staged; only our output is buffered."""
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


if __name__ == "__main__":
    app()
