"""Turn results.json into tables (terminal, Markdown), a PNG chart, and the issue's target check."""

from __future__ import annotations

import statistics
from pathlib import Path
from typing import Any, Iterator

from bench.harness import (
    GOAL_FLOOR_RATIO,
    GOAL_INCR_RATIO,
    GOAL_NOTHING_NEW_S,
    GOAL_PG_LPS,
    GOAL_RSS_GROWTH,
    GOAL_RSS_MB,
    GOAL_SQLITE_LPS,
    README_END,
    README_START,
)

STAGES = ("scan", "normalize", "dedup", "stage", "load")
TARGET_NAME = {"sqlite": "SQLite", "postgresql": "PostgreSQL"}


# -- formatting -----------------------------------------------------------------------------------------
def n_(x: float | int | None) -> str:
    if x is None:
        return "–"
    x = float(x)
    for div, suffix in ((1e6, "M"), (1e3, "k")):
        if abs(x) >= div:
            return f"{x / div:.2f}{suffix}" if abs(x) < 10 * div else f"{x / div:.1f}{suffix}" if abs(x) < 100 * div else f"{x / div:.0f}{suffix}"
    return f"{x:.0f}"


def secs(stat: dict[str, Any], key: str = "seconds") -> str:
    s = stat[key]
    return f"{s['median']:.2f} [{s['min']:.2f}–{s['max']:.2f}]" if stat["n"] > 1 else f"{s['median']:.2f}"


def _ok(stat: Any) -> bool:
    return isinstance(stat, dict) and "seconds" in stat


def lps(stat: dict[str, Any] | None) -> float | None:
    return stat["lines_per_s"]["median"] if _ok(stat) else None


def rounds(t: dict[str, Any]) -> list[dict[str, Any]]:
    """A target's rounds: its i-th end-to-end run with the i-th parse and ingest floor runs measured beside
    it (harness.Bench.run_target), and their ratio. Results from before the rounds have none: their parse
    floor was one per size, not per target."""
    if not (_ok(t.get("e2e")) and _ok(t.get("parse_floor")) and _ok(t.get("ingest_floor"))):
        return []
    out = []
    for e2e, parse, ingest in zip(t["e2e"]["runs"], t["parse_floor"]["runs"], t["ingest_floor"]["runs"]):
        floor = parse["seconds"] + ingest["seconds"]
        out.append({"e2e": e2e, "parse": parse, "ingest": ingest, "ratio": e2e["seconds"] / floor if floor > 0 else None})
    return out


def floor_ratio(size: dict[str, Any], target: str) -> float | None:
    """End to end / (parse floor + ingest floor): the median over the rounds that measured them side by side
    (results from before the rounds: the ratio of the medians)."""
    t = size["targets"].get(target, {})
    ratios = [r["ratio"] for r in rounds(t) if r["ratio"] is not None]
    if ratios:
        return statistics.median(ratios)
    if not (_ok(t.get("e2e")) and _ok(t.get("ingest_floor")) and _ok(size.get("parse_floor"))):
        return None
    floor = size["parse_floor"]["seconds"]["median"] + t["ingest_floor"]["seconds"]["median"]
    return t["e2e"]["seconds"]["median"] / floor if floor > 0 else None


def speedup(size: dict[str, Any], target: str, baseline: str) -> float | None:
    t = size["targets"].get(target, {})
    e2e, base = lps(t.get("e2e")), lps(t.get("baselines", {}).get(baseline))
    return e2e / base if e2e and base else None


# -- the table rows --------------------------------------------------------------------------------------
COLUMNS = ("size", "target", "measurement", "lines", "time s (median [min–max])", "lines/s", "MB/s",
           "peak RSS MB", "× floor", "speed-up vs per-record", "speed-up vs dlt")


def rows(results: dict[str, Any]) -> Iterator[tuple[str, ...]]:
    for size in results["sizes"]:
        label = size["label"]
        if _ok(size.get("parse_floor")):
            pf = size["parse_floor"]
            yield (label, "–", "floor: Polars parse, explicit schema", n_(pf["lines"]), secs(pf),
                   n_(lps(pf)), f"{pf['mb_per_s']['median']:.0f}", f"{pf['peak_rss_mb']['median']:.0f}", "", "", "")
        for target, t in size["targets"].items():
            tn = TARGET_NAME.get(target, target)
            for key, name in (("e2e", "observer etl end to end"), ("ingest_floor", "floor: ADBC ingest, no key/index (rows)"),
                              ("incremental", "incremental: one new hour"), ("nothing_new", "nothing new")):
                st = t.get(key)
                if not _ok(st):
                    continue
                ratio = floor_ratio(size, target) if key == "e2e" else None
                sp_pr = speedup(size, target, "per_record") if key == "e2e" else None
                sp_dlt = speedup(size, target, "dlt") if key == "e2e" else None
                rate = n_(lps(st)) if key != "nothing_new" else "–"
                mbs = f"{st['mb_per_s']['median']:.1f}" if key != "nothing_new" else "–"
                if key in ("nothing_new", "incremental"):
                    name = f"{name} (process wall {st['wall_s']['median']:.2f} s)"
                yield (label, tn, name, n_(st["lines"]), secs(st), rate, mbs, f"{st['peak_rss_mb']['median']:.0f}",
                       f"{ratio:.2f}×" if ratio else "", f"{sp_pr:.1f}×" if sp_pr else "",
                       f"{sp_dlt:.1f}×" if sp_dlt else "")
            for key, name in (("per_record", "baseline: per-record (design doc), sample"),
                              ("dlt", "baseline: dlt merge, sample")):
                st = t.get("baselines", {}).get(key)
                if st is None:
                    continue
                if not _ok(st):
                    yield (label, tn, f"{name}: skipped ({st.get('skipped', '?')})", "", "", "", "", "", "", "", "")
                    continue
                yield (label, tn, name, n_(st["lines"]), secs(st), n_(lps(st)), f"{st['mb_per_s']['median']:.1f}",
                       f"{st['peak_rss_mb']['median']:.0f}", "", "", "")


STAGE_COLUMNS = ("size", "target", "run_etl s", *STAGES, "other")


def stage_rows(results: dict[str, Any]) -> Iterator[tuple[str, ...]]:
    for size in results["sizes"]:
        for target, t in size["targets"].items():
            e2e = t.get("e2e")
            if not _ok(e2e):
                continue
            total = e2e["seconds"]["median"]
            st = e2e.get("stages", {})
            other = total - sum(st.get(s, 0.0) for s in STAGES)
            cells = [f"{st.get(s, 0.0):.2f} ({100 * st.get(s, 0.0) / total:.0f}%)" for s in STAGES]
            yield (size["label"], TARGET_NAME.get(target, target), f"{total:.2f}", *cells,
                   f"{other:.2f} ({100 * other / total:.0f}%)")


# -- the issue's targets ---------------------------------------------------------------------------------
def _size(results: dict[str, Any], at_least: int) -> dict[str, Any] | None:
    cands = [s for s in results["sizes"] if s["lines_requested"] >= at_least]
    return min(cands, key=lambda s: s["lines_requested"]) if cands else None


def _largest(results: dict[str, Any]) -> dict[str, Any] | None:
    return max(results["sizes"], key=lambda s: s["lines_requested"]) if results["sizes"] else None


def _growth(a: dict[str, Any], b: dict[str, Any]) -> str:
    """Median peak RSS from one measurement to another, e.g. '271 → 606 MB (+123%)'."""
    ra, rb = a["peak_rss_mb"]["median"], b["peak_rss_mb"]["median"]
    return f"{ra:.0f} → {rb:.0f} MB ({rb / ra - 1:+.0%})"


def check_targets(results: dict[str, Any]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    if not results["sizes"]:
        return out
    big = _size(results, 10_000_000)
    judged = big or _largest(results)
    assert judged is not None
    note = "" if big else f"not measured at 10M: shown at {judged['label']}, not judged"

    def add(goal: str, measured: str, met: bool | None, note_: str = "") -> None:
        out.append({"goal": goal, "measured": measured, "met": met, "note": note_})

    for target, goal in (("sqlite", GOAL_SQLITE_LPS), ("postgresql", GOAL_PG_LPS)):
        e2e = judged["targets"].get(target, {}).get("e2e")
        if not _ok(e2e):
            continue
        v = lps(e2e)
        add(f"{TARGET_NAME[target]} end to end ≥ {n_(goal)} lines/s on 10M lines",
            f"{n_(v)} lines/s at {judged['label']}", (v >= goal) if big else None, note)
    for target in ("sqlite", "postgresql"):
        r = floor_ratio(judged, target)
        if r is None:
            continue
        add(f"{TARGET_NAME[target]}: total time ≤ {GOAL_FLOOR_RATIO}× the floor (parse + unindexed ingest)",
            f"{r:.2f}× at {judged['label']}", (r <= GOAL_FLOOR_RATIO) if big else None,
            "" if big else f"at {judged['label']} (largest measured)")
    small = next((s for s in results["sizes"] if s["lines_requested"] == 100_000), None)
    for target in ("sqlite", "postgresql"):
        if big and small:
            a, b = small["targets"].get(target, {}).get("incremental"), big["targets"].get(target, {}).get("incremental")
            if _ok(a) and _ok(b):
                r = b["seconds"]["median"] / a["seconds"]["median"]
                add(f"{TARGET_NAME[target]}: one new hour on 10M ≤ {GOAL_INCR_RATIO}× the same on 100k",
                    f"{b['seconds']['median']:.2f} s vs {a['seconds']['median']:.2f} s = {r:.2f}×", r <= GOAL_INCR_RATIO,
                    f"inside run_etl, which imports pyarrow and NumPy for the load; the whole process: "
                    f"{b['wall_s']['median']:.2f} s vs {a['wall_s']['median']:.2f} s")
                continue
        sizes = [s for s in results["sizes"] if _ok(s["targets"].get(target, {}).get("incremental"))]
        if len(sizes) >= 2:
            lo = min(sizes, key=lambda s: s["lines_requested"])
            hi = max(sizes, key=lambda s: s["lines_requested"])
            a, b = lo["targets"][target]["incremental"], hi["targets"][target]["incremental"]
            r = b["seconds"]["median"] / a["seconds"]["median"]
            add(f"{TARGET_NAME[target]}: one new hour on 10M ≤ {GOAL_INCR_RATIO}× the same on 100k",
                f"{hi['label']} vs {lo['label']}: {b['seconds']['median']:.2f} s vs {a['seconds']['median']:.2f} s = {r:.2f}×",
                None, "not the 10M/100k pair: not judged")
        elif len(sizes) == 1:
            b = sizes[0]["targets"][target]["incremental"]
            add(f"{TARGET_NAME[target]}: one new hour on 10M ≤ {GOAL_INCR_RATIO}× the same on 100k",
                f"{b['seconds']['median']:.2f} s at {sizes[0]['label']}", None, "needs both 100k and 10M")
    nn = [(s["label"], t, st["targets"][t]["nothing_new"]) for st in results["sizes"] for s in [st]
          for t in st["targets"] if _ok(st["targets"][t].get("nothing_new"))]
    if nn:
        worst_wall = max(nn, key=lambda x: x[2]["wall_s"]["max"])
        worst_run = max(x[2]["seconds"]["max"] for x in nn)
        add(f"nothing-new run < {GOAL_NOTHING_NEW_S:.0f} s on any size",
            f"worst: {worst_wall[2]['wall_s']['max']:.2f} s for the whole `observer etl` process "
            f"({worst_wall[0]} {TARGET_NAME.get(worst_wall[1], worst_wall[1])}); {worst_run:.2f} s inside run_etl",
            worst_wall[2]["wall_s"]["max"] < GOAL_NOTHING_NEW_S, "judged on the process wall time a user waits")
    if big:
        peaks = [(t, big["targets"][t]["e2e"]["peak_rss_mb"]["max"]) for t in big["targets"] if _ok(big["targets"][t].get("e2e"))]
        if peaks:
            t, worst = max(peaks, key=lambda x: x[1])
            add(f"peak RSS < {GOAL_RSS_MB * 2**20 / 1e9:.1f} GB at 10M lines", f"{worst:.0f} MB ({TARGET_NAME.get(t, t)})",
                worst < GOAL_RSS_MB, "the ETL process; the PostgreSQL server's own memory is not included")
    else:
        peaks = [(t, judged["targets"][t]["e2e"]["peak_rss_mb"]["max"]) for t in judged["targets"]
                 if _ok(judged["targets"][t].get("e2e"))]
        if peaks:
            t, worst = max(peaks, key=lambda x: x[1])
            add(f"peak RSS < {GOAL_RSS_MB * 2**20 / 1e9:.1f} GB at 10M lines", f"{worst:.0f} MB at {judged['label']}",
                None, note)
    sizes = sorted(results["sizes"], key=lambda s: s["lines_requested"])
    for i, a in enumerate(sizes):
        for b in sizes[i + 1:]:
            ratio = b["lines_requested"] / a["lines_requested"]
            if not 8 <= ratio <= 12:
                continue
            for t in b["targets"]:
                ea, eb = a["targets"].get(t, {}).get("e2e"), b["targets"].get(t, {}).get("e2e")
                if _ok(ea) and _ok(eb):
                    g = eb["peak_rss_mb"]["median"] / ea["peak_rss_mb"]["median"] - 1
                    # Only the parse floor's: the ingest floor holds up to FLOOR_BATCH_BYTES (1 GiB) of rows
                    # before each ingest, so its peak grows with the archive by construction.
                    fa, fb = a.get("parse_floor"), b.get("parse_floor")
                    add(f"{TARGET_NAME.get(t, t)}: 10× the archive grows peak RSS < {GOAL_RSS_GROWTH:.0%}",
                        f"{a['label']} → {b['label']}: {_growth(ea, eb)}", g < GOAL_RSS_GROWTH,
                        f"the parse floor, same step: {_growth(fa, fb)}" if _ok(fa) and _ok(fb) else "")
    return out


# -- Markdown ------------------------------------------------------------------------------------------
def _md_table(cols: tuple[str, ...], body: list[tuple[str, ...]]) -> str:
    lines = ["| " + " | ".join(cols) + " |", "|" + "|".join("---" for _ in cols) + "|"]
    lines += ["| " + " | ".join(c.replace("|", "\\|") for c in r) + " |" for r in body]
    return "\n".join(lines)


def _baseline_sqlite(m: dict[str, Any]) -> str:
    """Python's sqlite3 (the per-record baseline's), where it differs from the engine's ADBC-bundled one."""
    other = m.get("sqlite_module")
    return f" (the per-record baseline's sqlite3 module: {other})" if other and other != m.get("sqlite") else ""


def machine_line(m: dict[str, Any]) -> str:
    return (f"{m.get('cpu', '?')}, {m.get('cores', '?')} cores, {m.get('memory_gb', '?')} GB RAM, {m.get('os', '')}; "
            f"Python {m.get('python')}, Polars {m.get('polars')}, pyarrow {m.get('pyarrow')}, "
            f"ADBC sqlite {m.get('adbc_driver_sqlite')} / postgresql {m.get('adbc_driver_postgresql')}, "
            f"SQLite {m.get('sqlite')}{_baseline_sqlite(m)}, PostgreSQL {m.get('postgresql') or '–'} (same machine, loopback)"
            + (f"; code at {m['git']}" if m.get("git") else ""))


ROUND_COLUMNS = ("size", "target", "round", "end to end s", "parse floor s", "ingest floor s", "× floor", "cached")


def round_rows(results: dict[str, Any]) -> Iterator[tuple[str, ...]]:
    for size in results.get("sizes", []):
        for target, t in size["targets"].items():
            for i, r in enumerate(rounds(t)):
                cached = (r["e2e"].get("warm") or {}).get("cached_before")
                yield (size["label"], TARGET_NAME[target], str(i + 1), f"{r['e2e']['seconds']:.2f}",
                       f"{r['parse']['seconds']:.2f}", f"{r['ingest']['seconds']:.2f}",
                       f"{r['ratio']:.2f}×" if r["ratio"] else "–",
                       f"{cached:.0%}" if isinstance(cached, (int, float)) else "–")


def _unit_size_line(cfg: dict[str, Any]) -> list[str]:
    """A line that says the runs were not measured at the engine's default unit size, if so."""
    if not cfg.get("unit_size"):
        return []
    from engine.config import DEFAULT_UNIT_SIZE

    return [f"Unit size: every `observer etl` run here commits at most {cfg['unit_size']} of new bytes at a time "
            f"(`--unit-size`; the engine's default is {DEFAULT_UNIT_SIZE})  "]


def markdown(results: dict[str, Any], heading: str = "##") -> str:
    cfg = results.get("config", {})
    out = [
        f"{heading} Results",
        "",
        f"Command: `{results.get('command', '')}`  ",
        f"Run: {results.get('started_at')} → {results.get('finished_at') or 'running'}  ",
        *_unit_size_line(cfg),
        f"Machine: {machine_line(results.get('machine', {}))}",
        "",
        _md_table(COLUMNS, list(rows(results))),
        "",
        "lines = JSONL lines read (loaded + duplicates + rejected); MB/s over the JSONL bytes. "
        "× floor = end-to-end time / (parse floor + unindexed-ingest floor) on the same files, the median over "
        "rounds that run the three side by side (below); every run that reads the archive starts with it in the "
        "page cache. "
        f"Baselines run once on a sample of {n_(cfg.get('baseline_lines'))} lines (the same share of every file) "
        "and are compared by lines/s. Peak RSS is the measured process's own (its VmHWM at exit); the PostgreSQL "
        "server's memory is not included.",
        "",
        load_line(results),
        "",
        f"{heading}# Where the end-to-end time goes (median stage seconds, from the run summary)",
        "",
        _md_table(STAGE_COLUMNS, list(stage_rows(results))),
        "",
        "Stage seconds are summed over the threads that do the work; where the engine overlaps the next unit's "
        "parse with this unit's load they can add up to more than the run's wall time (a negative 'other').",
        "",
        f"{heading}# Rounds: each end-to-end run beside its floors",
        "",
        _md_table(ROUND_COLUMNS, list(round_rows(results))),
        "",
        "Seconds of each round, in the order measured (the first round's end-to-end run stages the rows its "
        "ingest floor loads, so it comes first; later rounds end with it, so the last one's database is what "
        "the small runs start from). cached = the share of the archive's JSONL bytes in the page cache before "
        "the harness read them in for the end-to-end run: this machine pages out what has not been touched "
        "for about a minute.",
        "",
        f"{heading}# Against the issue's targets",
        "",
        _md_table(("goal", "measured", "met", "note"), [
            (c["goal"], c["measured"], {True: "yes", False: "**no**", None: "n/a"}[c["met"]], c.get("note", ""))
            for c in results.get("targets_check", [])
        ]),
        "",
    ]
    sizes = results.get("sizes", [])
    if sizes:
        out += [f"{heading}# Archives", ""]
        for s in sizes:
            a = s["archive"]
            ex = a.get("expected", {})
            out.append(
                f"- {s['label']}: `{a['path']}`, {a['jsonl_files']} JSONL files, {a['jsonl_bytes'] / 1e6:.0f} MB "
                f"({a['scalp_bytes'] / 1e6:.0f} MB scalp, {a['swing_bytes'] / 1e6:.0f} MB swing); generator's answer: "
                f"{ex.get('lines_total', '?'):,} lines, {ex.get('scalp_ticks', '?'):,} ticks, "
                f"{ex.get('swing_snapshots', '?'):,} snapshots"
                if isinstance(ex.get("lines_total"), int) else f"- {s['label']}: `{a['path']}`"
            )
        out.append("")
    out += [f"{heading}# Reproduce a number", "",
            "Each run in results.json carries its own `command` (paths relative to the repository root; the "
            "harness's work copy of the archive and its databases are removed after the run). By hand, from the "
            "repository root:", "", "```bash"]
    code = results.get("code") or {}
    if code.get("commit") and code.get("rev") != "worktree":
        out.append(f"git worktree add ../measured {code['commit']}   # the engine that was measured (or git checkout)")
    elif code.get("rev") == "worktree":
        out.append(f"git apply {code.get('diff')}   # on top of HEAD {str(code.get('commit')).split('+')[0]}")
    for s in sizes[-1:]:
        a = s["archive"]
        out += [f"{a.get('command', '')}   # or reuse the cache",
                f"observer etl --source {a['path']} --target sqlite:///e2e.db --staging stg-sqlite --json   "
                "# fresh database and staging",
                "createdb -h 127.0.0.1 -U postgres bench_e2e",
                f"observer etl --source {a['path']} --target postgresql://postgres@127.0.0.1:5432/bench_e2e "
                "--staging stg-pg --json",
                f"python -m bench.child parse-floor --args-json '{{\"archive\": \"{a['path']}\"}}'",
                "python -m bench.child ingest-floor --args-json '{\"staging\": \"stg-sqlite\", \"target\": "
                "\"sqlite:///floor.db\"}'",
                f"python -m bench.child per-record --args-json '{{\"archive\": \"{a['path']}\", \"fraction\": "
                f"{min(1.0, results.get('config', {}).get('baseline_lines', 200000) / max(s['parse_floor']['lines'] if _ok(s.get('parse_floor')) else 1, 1)):.4f}, "
                f"\"max_lines\": {results.get('config', {}).get('baseline_lines', 200000)}, \"target\": \"sqlite:///per-record.db\"}}'"]
    out += ["```", ""]
    for n in results.get("notes", []):
        out += ["", f"Note: {n}"]
    return "\n".join(out) + "\n"


def load_line(results: dict[str, Any]) -> str:
    """How busy the machine was when the runs started (other work inflates the times)."""
    loads = []
    for size in results.get("sizes", []):
        stats = [size.get("parse_floor")] + [
            st for t in size["targets"].values()
            for st in (t.get("e2e"), t.get("ingest_floor"), t.get("incremental"), t.get("nothing_new"))
        ]
        loads += [r["loadavg_before"] for st in stats if _ok(st) for r in st["runs"] if "loadavg_before" in r]
    if not loads:
        return ""
    loads.sort()
    return (f"1-minute load average when each run started: median {loads[len(loads) // 2]:.2f}, max {loads[-1]:.2f} "
            f"(on {results.get('machine', {}).get('cores', '?')} cores; other work on the machine inflates the times).")


def main(argv: list[str] | None = None) -> None:
    """Re-render results.md, the chart and optionally a README from a results.json."""
    import argparse
    import json

    ap = argparse.ArgumentParser(prog="python -m bench.report")
    ap.add_argument("results", type=Path)
    ap.add_argument("--readme", type=Path)
    ns = ap.parse_args(argv)
    results = json.loads(ns.results.read_text())
    results["targets_check"] = check_targets(results)
    ns.results.write_text(json.dumps(results, indent=1, default=str) + "\n")
    write_markdown(results, ns.results.with_name("results.md"))
    write_chart(results, ns.results.with_name("results.png"))
    if ns.readme:
        update_readme(results, ns.readme)
    print_tables(results)


def write_markdown(results: dict[str, Any], path: Path) -> None:
    path.write_text("# observer-etl benchmark\n\n" + markdown(results))


def update_readme(results: dict[str, Any], readme: Path) -> None:
    """Replace the section between the bench-results markers (appended if the markers are missing)."""
    block = f"{README_START}\n{markdown(results)}{README_END}"
    text = readme.read_text() if readme.exists() else "# Benchmarks\n"
    if README_START in text and README_END in text:
        head, rest = text.split(README_START, 1)
        _, tail = rest.split(README_END, 1)
        text = head + block + tail
    else:
        text = text.rstrip() + "\n\n" + block + "\n"
    readme.write_text(text)


# -- terminal ------------------------------------------------------------------------------------------
def print_tables(results: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    con = Console()
    if not con.is_terminal:
        con = Console(width=200)
    t = Table(title=f"observer-etl benchmark · {results.get('command', '')}", title_justify="left")
    for c in COLUMNS:
        t.add_column(c, justify="left" if c in ("size", "target", "measurement") else "right")
    for r in rows(results):
        t.add_row(*r)
    con.print(t)
    s = Table(title="where the end-to-end time goes (median seconds)", title_justify="left")
    for c in STAGE_COLUMNS:
        s.add_column(c, justify="left" if c in ("size", "target") else "right")
    for r in stage_rows(results):
        s.add_row(*r)
    con.print(s)
    g = Table(title="against the issue's targets", title_justify="left")
    for c in ("goal", "measured", "met", "note"):
        g.add_column(c)
    for c in results.get("targets_check", []):
        g.add_row(c["goal"], c["measured"], {True: "[green]yes", False: "[red]no", None: "[yellow]n/a"}[c["met"]],
                  c.get("note", ""))
    con.print(g)


# -- chart ---------------------------------------------------------------------------------------------
def write_chart(results: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sizes = [s for s in results["sizes"] if s["targets"]]
    if not sizes:
        return
    fig, axes = plt.subplots(len(sizes), 2, figsize=(14, 3.2 + 2.2 * len(sizes) * 1.0), squeeze=False)
    for ax_rate, ax_stage, size in zip(axes[:, 0], axes[:, 1], sizes):
        labels, values, colors = [], [], []
        palette = {"sqlite": "#1f77b4", "postgresql": "#d62728"}
        if _ok(size.get("parse_floor")):
            labels.append("parse floor")
            values.append(lps(size["parse_floor"]))
            colors.append("#7f7f7f")
        for target, t in size["targets"].items():
            tn = TARGET_NAME.get(target, target)
            for key, name in (("e2e", "observer etl"), ("ingest_floor", "ingest floor (rows/s)"),
                              ("incremental", "one new hour")):
                if _ok(t.get(key)):
                    labels.append(f"{tn}: {name}")
                    values.append(lps(t[key]))
                    colors.append(palette.get(target, "#333"))
            for key, name in (("per_record", "per-record*"), ("dlt", "dlt merge*")):
                st = t.get("baselines", {}).get(key)
                if _ok(st):
                    labels.append(f"{tn}: {name}")
                    values.append(lps(st))
                    colors.append("#bbbbbb")
        ypos = range(len(labels))
        ax_rate.barh(list(ypos), values, color=colors)
        ax_rate.set_yticks(list(ypos), labels, fontsize=8)
        ax_rate.invert_yaxis()
        ax_rate.set_xscale("log")
        ax_rate.set_xlabel("lines/s (log; * = on a sample)")
        ax_rate.set_title(f"{size['label']} lines: throughput (median)")
        for y, v in zip(ypos, values):
            ax_rate.text(v, y, f" {n_(v)}", va="center", fontsize=7)
        for goal, target in ((GOAL_SQLITE_LPS, "sqlite"), (GOAL_PG_LPS, "postgresql")):
            if target in size["targets"]:
                ax_rate.axvline(goal, color=palette[target], ls=":", lw=1)
        names = [TARGET_NAME.get(t, t) for t, v in size["targets"].items() if _ok(v.get("e2e"))]
        left = [0.0] * len(names)
        stage_colors = ("#8dd3c7", "#ffffb3", "#bebada", "#fb8072", "#80b1d3", "#dddddd")
        for i, stage in enumerate((*STAGES, "other")):
            vals = []
            for t, v in size["targets"].items():
                if not _ok(v.get("e2e")):
                    continue
                st = v["e2e"].get("stages", {})
                if stage == "other":  # stages overlap (the next unit is parsed during this one's load)
                    vals.append(max(0.0, v["e2e"]["seconds"]["median"] - sum(st.get(s, 0.0) for s in STAGES)))
                else:
                    vals.append(st.get(stage, 0.0))
            ax_stage.barh(names, vals, left=left, label=stage, color=stage_colors[i])
            left = [a + b for a, b in zip(left, vals)]
        walls = [v["e2e"]["seconds"]["median"] for v in size["targets"].values() if _ok(v.get("e2e"))]
        ax_stage.scatter(walls, names, marker="|", s=400, color="black", zorder=3, label="wall time")
        # The empty 'other' segment's sticky left edge would end the axis exactly at the longest bar.
        ax_stage.set_xlim(0, 1.05 * max([*left, *walls, 1e-9]))
        ax_stage.set_xlabel("stage seconds, stacked (parse overlaps load: may pass the wall time)")
        ax_stage.set_title(f"{size['label']} lines: where the time goes")
        ax_stage.legend(fontsize=7, ncols=7, loc="upper center", bbox_to_anchor=(0.5, -0.35))
    unit = results.get("config", {}).get("unit_size")
    fig.suptitle("observer-etl benchmark" + (f" (--unit-size {unit})" if unit else ""), fontsize=11)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)



if __name__ == "__main__":
    main()
