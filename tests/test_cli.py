"""The CLI as a user runs it: a subprocess, its exit code, its stdout and stderr."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from engine.process import keep_freed_pages_in_polars, polars_jemalloc_conf
from schemas.records import MARKET_RULE
from tests.support import REPO, cli, db_snapshot, rows, staged_snapshot, swing, tick, write_lines


@pytest.fixture
def small_archive(tmp_path: Path) -> Path:
    src = tmp_path / "archive"
    write_lines(src / "assets/scalp/20260130_13.jsonl", [tick(acc=1), tick(acc=1, session="observer-2"), "garbage"])
    write_lines(src / "assets/swing/20260130.jsonl", [swing()])
    return src


def test_json_summary_adds_up(small_archive: Path, tmp_path: Path) -> None:
    r = cli("etl", "--source", str(small_archive), "--target", f"sqlite:///{tmp_path}/t.db", "--staging", str(tmp_path / "s"), "--json")
    assert r.returncode == 0, r.stderr
    d = json.loads(r.stdout)
    assert (d["lines_read"], d["loaded"], d["duplicates"], d["rejected"], d["held_back"]) == (4, 2, 1, 1, 0)
    assert d["loaded"] + d["duplicates"] + d["rejected"] == d["lines_read"]
    assert d["kinds"]["scalp"]["lines_read"] == 3 and d["kinds"]["swing"]["lines_read"] == 1
    assert d["tables"]["scalp_ticks"] == {"inserted": 1, "updated": 0, "deleted": 0}
    assert d["seconds"] >= 0 and r.stderr == ""


def test_human_summary_and_relative_sqlite_url(small_archive: Path, tmp_path: Path) -> None:
    r = cli("etl", "--source", str(small_archive), "--target", "sqlite:///rel.db", "--staging", "stg", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert "lines read" in r.stdout and "scalp_ticks" in r.stdout and "invalid_json 1" in r.stdout
    assert (tmp_path / "rel.db").exists() and (tmp_path / "stg" / "_manifest").is_dir()


def test_observer_toml_names_and_defaults(small_archive: Path, tmp_path: Path) -> None:
    (tmp_path / "observer.toml").write_text(
        f'[etl]\nsource = "archive"\ntarget = "trading_db"\nstaging = "st"\n'
        f'[sources]\narchive = "{small_archive}"\n[targets]\ntrading_db = "sqlite:///named.db"\n'
    )
    r = cli("etl", "--json", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["loaded"] == 2 and (tmp_path / "named.db").exists()
    r2 = cli("etl", "--source=archive", "--target=trading_db", "--json", cwd=tmp_path)
    assert json.loads(r2.stdout)["lines_read"] == 0


def test_unit_size_caps_the_new_bytes_of_a_commit(small_archive: Path, tmp_path: Path) -> None:
    """``--unit-size`` (or ``unit_size`` in observer.toml) trades memory for commits, never the result:
    units of one byte commit each line on its own, and load what one commit for the day's two files loads."""
    def load(name: str, *extra: str) -> dict:
        r = cli("etl", "--source", str(small_archive), "--target", f"sqlite:///{tmp_path / name}.db",
                "--staging", str(tmp_path / name), "--json", *extra, cwd=tmp_path)
        assert r.returncode == 0, r.stderr
        return json.loads(r.stdout)

    whole = load("whole")
    (tmp_path / "observer.toml").write_text('[etl]\nunit_size = "1"\n')
    small, flag = load("small"), load("flag", "--unit-size", "1MB")  # the flag wins over the file
    assert (whole["commits"], small["commits"], flag["commits"]) == (1, 4, 1)  # 3 scalp lines + 1 swing line, one day
    assert db_snapshot(f"sqlite:///{tmp_path / 'whole.db'}") == db_snapshot(f"sqlite:///{tmp_path / 'small.db'}")
    assert small["lines_read"] == whole["lines_read"] == 4
    assert (whole["unit_bytes"], small["unit_bytes"], flag["unit_bytes"]) == (128 * 2**20, 1, 2**20)


@pytest.mark.parametrize(
    "toml, message",
    [
        ('[etl]\ntagret = "sqlite:///elsewhere.db"\n', "unknown key in [etl] 'tagret' (did you mean 'target'?)"),
        ('[sourcez]\narchive = "a"\n', "unknown section 'sourcez' (did you mean 'sources'?)"),
        ('[etl]\nstaging = 5\n', "staging in [etl] must be a string, not 5"),
        ('etl = "x"\n', "etl must be a [etl] table"),
        ('[etl]\nsource = ""\n', "source in [etl] is empty"),
        ('[targets]\ntrading_db = " "\n', "trading_db in [targets] is empty"),
        ('[etl]\nmarket = "../x"\n', f"market in [etl] '../x' is not a market name: {MARKET_RULE}"),
        ('[etl]\ndefault_market = ""\n', "default_market in [etl] is empty"),
        ('[etl]\ndefault_market = "a b"\n', f"default_market in [etl] 'a b' is not a market name: {MARKET_RULE}"),
        ('[etl]\nunit_size = "lots"\n', "unit_size in [etl] 'lots' is not a size: a whole number of bytes, or with KB, MB or GB (16MB)"),
    ],
)
def test_observer_toml_mistakes_stop_the_run(small_archive: Path, tmp_path: Path, toml: str, message: str) -> None:
    """A misspelt key would run with the default instead (a misspelt target loads into ./trading.db)."""
    (tmp_path / "observer.toml").write_text(toml)
    r = cli("etl", "--source", str(small_archive), cwd=tmp_path)
    assert r.returncode == 2 and "Traceback" not in r.stdout + r.stderr
    assert r.stderr.strip() == f"error: config file {tmp_path / 'observer.toml'}: {message}"
    assert not (tmp_path / "trading.db").exists() and not (tmp_path / "elsewhere.db").exists()


@pytest.mark.parametrize(
    "target",
    ["host=127.0.0.1 user=u password=Sekr3tKV dbname=db", "//u:Sekr3tKV@127.0.0.1/db", "u:Sekr3tKV@127.0.0.1:5432/db"],
)
@pytest.mark.parametrize("given", ["flag", "toml"])
def test_a_target_that_is_no_url_is_refused_without_its_password(
    small_archive: Path, tmp_path: Path, target: str, given: str
) -> None:
    """A libpq key/value string or a URL without its scheme was echoed whole, password and all."""
    if given == "toml":
        (tmp_path / "observer.toml").write_text(f"[targets]\ndb = '{target}'\n")
    r = cli("etl", "--source", str(small_archive), "--target", target if given == "flag" else "db", cwd=tmp_path)
    assert r.returncode == 2 and "Traceback" not in r.stdout + r.stderr
    assert len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert "Sekr3tKV" not in r.stdout + r.stderr and "***" in r.stderr


@pytest.mark.parametrize("flag", ["--source", "--staging", "--holidays"])
def test_a_home_directory_of_no_user_is_one_sentence(small_archive: Path, tmp_path: Path, flag: str) -> None:
    args = {"--source": str(small_archive), "--target": f"sqlite:///{tmp_path / 't.db'}", "--staging": str(tmp_path / "s")}
    args[flag] = "~no_such_user_x/x"
    r = cli("etl", *[a for kv in args.items() for a in kv])
    assert r.returncode == 2 and "Traceback" not in r.stdout + r.stderr
    assert r.stderr.strip() == "error: path '~no_such_user_x/x': ~no_such_user_x is not a user's home directory here"


def test_relative_paths_in_a_config_file_are_relative_to_its_folder(small_archive: Path, tmp_path: Path) -> None:
    """A job started elsewhere with --config made a second staging and database in its working directory
    and loaded the whole archive again, successfully. A flag's path stays relative to the working directory."""
    import shutil

    conf, elsewhere = tmp_path / "conf", tmp_path / "elsewhere"
    shutil.copytree(small_archive, conf / "archive")
    elsewhere.mkdir()
    (conf / "observer.toml").write_text(
        '[etl]\nsource = "archive"\ntarget = "db"\nstaging = "st"\nholidays = "h.txt"\n'
        '[targets]\ndb = "sqlite:///trading.db"\n'
    )
    (conf / "h.txt").write_text("2026-01-01\n")
    first = cli("etl", "--json", cwd=conf)
    assert first.returncode == 0, first.stderr
    again = cli("etl", "--config", str(conf / "observer.toml"), "--json", cwd=elsewhere)
    assert again.returncode == 0, again.stderr
    assert (json.loads(first.stdout)["loaded"], json.loads(again.stdout)["lines_read"]) == (2, 0)
    assert list(elsewhere.iterdir()) == []
    flags = cli("etl", "--config", str(conf / "observer.toml"), "--staging", "st2", "--target", "sqlite:///t2.db",
                "--json", cwd=elsewhere)
    assert flags.returncode == 0, flags.stderr
    assert sorted(p.name for p in elsewhere.iterdir()) == ["st2", "t2.db"]


@pytest.mark.parametrize("folder", ["c#1", "c?1", "c%41", "c 1"])
def test_a_config_files_sqlite_target_in_a_folder_of_any_name(small_archive: Path, tmp_path: Path, folder: str) -> None:
    """The folder is part of the URL the relative path becomes: '#', '?' and '%' in its name were read
    as URL syntax."""
    conf = tmp_path / folder
    conf.mkdir()
    (conf / "observer.toml").write_text(f'[etl]\nsource = "{small_archive}"\ntarget = "sqlite:///t.db"\nstaging = "st"\n')
    r = cli("etl", "--config", str(conf / "observer.toml"), "--json", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert (conf / "t.db").is_file() and json.loads(r.stdout)["loaded"] == 2


def test_an_in_memory_sqlite_target_in_a_config_file_is_still_refused(small_archive: Path, tmp_path: Path) -> None:
    (tmp_path / "observer.toml").write_text(f'[etl]\nsource = "{small_archive}"\ntarget = "sqlite:///:memory:"\n')
    r = cli("etl", cwd=tmp_path)
    assert r.returncode == 2
    assert "an in-memory database keeps nothing; name a file" in r.stderr


def test_a_config_path_that_cannot_be_read_is_one_sentence(small_archive: Path, tmp_path: Path) -> None:
    r = cli("etl", "--source", str(small_archive), "--config", str(tmp_path), cwd=tmp_path)
    assert r.returncode == 2 and "Traceback" not in r.stdout + r.stderr
    assert r.stderr.strip() == f"error: config file {tmp_path} cannot be read: Is a directory"


def test_paths_that_cannot_be_recorded_or_used_are_one_sentence(small_archive: Path, tmp_path: Path) -> None:
    """A name that is not UTF-8 (the source, or a folder inside it) cannot be stored as text in any table;
    a file where the staging's lock folder belongs cannot be locked. Each was a traceback."""
    import shutil

    url = f"sqlite:///{tmp_path}/t.db"
    bad = tmp_path / os.fsdecode(b"src\xff")
    shutil.copytree(small_archive, bad)
    r = cli("etl", "--source", str(bad), "--target", url, "--staging", str(tmp_path / "s1"))
    assert r.returncode == 2 and "is not valid UTF-8: rename it" in r.stderr
    assert "Traceback" not in r.stdout + r.stderr

    archive = tmp_path / "a"
    shutil.copytree(small_archive, archive)
    shutil.copytree(small_archive / "assets", archive / os.fsdecode(b"old\xff") / "assets")
    r = cli("etl", "--source", str(archive), "--target", url, "--staging", str(tmp_path / "s2"))
    assert r.returncode == 2 and "the file's name is not valid UTF-8; rename it" in r.stderr
    assert "Traceback" not in r.stdout + r.stderr

    (tmp_path / "s3").mkdir()
    (tmp_path / "s3" / "_locks").write_text("")
    r = cli("etl", "--source", str(small_archive), "--target", url, "--staging", str(tmp_path / "s3"))
    assert r.returncode == 2 and f"{tmp_path / 's3' / '_locks'} cannot be used as the lock folder" in r.stderr
    assert "Traceback" not in r.stdout + r.stderr


def test_a_staging_directory_of_another_database_stops_the_run(small_archive: Path, tmp_path: Path) -> None:
    """A new --target with the same (or the default) staging directory: its manifest says every line is
    loaded, so the run would load nothing into the new database and succeed. It stops in one sentence."""
    first, second, stg = f"sqlite:///{tmp_path}/a.db", f"sqlite:///{tmp_path}/b.db", tmp_path / "s"
    assert cli("etl", "--source", str(small_archive), "--target", first, "--staging", str(stg)).returncode == 0
    r = cli("etl", "--source", str(small_archive), "--target", second, "--staging", str(stg))
    assert r.returncode == 2 and "Traceback" not in r.stdout + r.stderr
    assert len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert f"the staging directory {stg} belongs to another database: {second} does not have its commit" in r.stderr
    assert rows(second, "SELECT count(*) FROM etl_runs") == [(0,)]
    again = cli("etl", "--source", str(small_archive), "--target", first, "--staging", str(stg), "--json")
    assert again.returncode == 0 and '"lines_read": 0' in again.stdout


@pytest.mark.parametrize(
    "args, message",
    [
        (["--source", "/no/such/archive"], "the source archive '/no/such/archive' does not exist"),
        (["--target", "mysql://x/y"], "unsupported target"),
        (["--target", "sqlite:/bad"], "invalid SQLite URL"),
        (["--target", "sqlite:///t.db?mode=ro"], "it takes no options (?...), only a file path"),
        (["--target", "sqlite:///:memory:"], "an in-memory database keeps nothing; name a file"),
        (["--target", "trading_db"], "neither a URL"),
        (["--target", "sqlite:////no/such/dir/t.db"], "does not exist"),
        (["--target", "postgresql://nobody:s3cret@127.0.0.1:1/x"], "cannot connect"),
        (["--staging", "/proc/forbidden"], "staging directory /proc/forbidden is not writable"),
        (["--target", "sqlite:///."], "is a directory, not a database file"),
        (["--target", "sqlite:////proc/t.db"], "SQLite cannot open or create /proc/t.db (is /proc writable"),
        (["--market", "../kr_stocks"], "--market '../kr_stocks' is not a market name"),
        (["--unit-size", "1.5GB"], "--unit-size '1.5GB' is not a size"),
        (["--source", ""], "--source is empty"),
        (["--staging", " "], "--staging is empty"),
    ],
)
def test_bad_input_is_one_readable_sentence(small_archive: Path, tmp_path: Path, args: list[str], message: str) -> None:
    base = {"--source": str(small_archive), "--target": f"sqlite:///{tmp_path}/t.db", "--staging": str(tmp_path / "s")}
    for flag, value in zip(args[::2], args[1::2]):
        base[flag] = value
    r = cli("etl", *[x for kv in base.items() for x in kv], cwd=tmp_path)
    assert r.returncode != 0
    assert message in r.stderr
    assert "Traceback" not in r.stderr + r.stdout
    assert "s3cret" not in r.stderr + r.stdout
    assert len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert not (tmp_path / "s").exists(), "a run refused before it started left its staging folder behind"


def test_a_refused_run_removes_only_the_folders_it_made(small_archive: Path, tmp_path: Path) -> None:
    """``new/../mine`` makes ``new`` (creating ``mine`` goes through it), while ``mine`` is the user's."""
    work = tmp_path / "work"
    (work / "mine").mkdir(parents=True)
    r = cli("etl", "--source", str(small_archive), "--target", "postgresql://nobody@127.0.0.1:1/x",
            "--staging", "new/../mine", cwd=work)
    assert r.returncode == 2 and "cannot connect" in r.stderr
    assert sorted(p.name for p in work.iterdir()) == ["mine"]
    # A path through a file: 'new' is made before the mkdir under the file fails.
    (work / "a_file").write_text("")
    r = cli("etl", "--source", str(small_archive), "--staging", "new/../a_file/sub", cwd=work)
    assert r.returncode == 2 and "not writable" in r.stderr
    assert sorted(p.name for p in work.iterdir()) == ["a_file", "mine"]


@pytest.mark.parametrize("sig, code, word", [(signal.SIGINT, 130, "interrupted"), (signal.SIGTERM, 143, "terminated")])
def test_ctrl_c_or_sigterm_mid_run_stops_it_cleanly(big_archive: Path, tmp_path: Path, sig: int, code: int, word: str) -> None:
    """Sent once the first unit has committed: never lost (Polars' own SIGINT handler swallowed some),
    one line, the run marked failed, and the next run ends where one clean run ends."""
    url, stg = f"sqlite:///{tmp_path / 't.db'}", tmp_path / "stg"
    args = ["etl", "--source", str(big_archive), "--target", url, "--staging", str(stg), "--json"]
    proc = subprocess.Popen([sys.executable, str(REPO / "cli.py"), *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    manifest = stg / "_manifest/scope=all/files.parquet"
    deadline = time.monotonic() + 60
    while not manifest.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.001)
    assert proc.poll() is None, "the run ended before the signal could be sent"
    proc.send_signal(sig)
    out, err = proc.communicate(timeout=120)
    assert (proc.returncode, out) == (code, ""), err
    assert err.strip() == f"{word}: the last commit is intact; run again to continue"
    assert rows(url, "SELECT status FROM etl_runs") == [("failed",)]
    assert cli(*args).returncode == 0
    clean = f"sqlite:///{tmp_path / 'clean.db'}"
    assert cli("etl", "--source", str(big_archive), "--target", clean, "--staging", str(tmp_path / "c"), "--json").returncode == 0
    assert db_snapshot(url) == db_snapshot(clean)


@pytest.mark.parametrize("damaged", ["manifest", "part"])
def test_a_damaged_staging_directory_is_one_readable_sentence(small_archive: Path, tmp_path: Path, damaged: str) -> None:
    """A staged file spoilt outside a run (the manifest, or a part the next run must read) stops the run
    with the file's name, before anything is loaded, and the run is not left 'running' in etl_runs."""
    url, stg = f"sqlite:///{tmp_path}/t.db", tmp_path / "s"
    args = ["etl", "--source", str(small_archive), "--target", url, "--staging", str(stg)]
    assert cli(*args).returncode == 0
    if damaged == "manifest":
        victim = stg / "_manifest/scope=all/files.parquet"
    else:
        victim = next((stg / "scalp_ticks").rglob("part-*.parquet"))
        # a new trade of the same day: the run compares it with that day's staged part
        write_lines(small_archive / "assets/scalp/20260130_14.jsonl", [tick(acc=9, execution_time="140000")])
    victim.write_bytes(b"not parquet")
    before = rows(url, "SELECT count(*) FROM scalp_ticks")
    r = cli(*args)
    assert r.returncode == 2
    assert "Traceback" not in r.stderr + r.stdout
    assert len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert f"the staging directory {stg} is damaged: {victim} cannot be read (" in r.stderr
    assert rows(url, "SELECT count(*) FROM scalp_ticks") == before
    got = rows(url, "SELECT status, summary_json FROM etl_runs ORDER BY started_at")
    assert [s for s, _ in got] == (["succeeded"] if damaged == "manifest" else ["succeeded", "failed"])
    if damaged == "part":  # the failed row keeps the sentence the user saw
        assert json.loads(got[-1][1])["error"] == r.stderr.strip().removeprefix("error: ")


@pytest.mark.skipif(os.geteuid() == 0, reason="root can write anywhere; covered by /proc above")
def test_unwritable_staging_as_user(small_archive: Path, tmp_path: Path) -> None:
    ro = tmp_path / "ro"
    ro.mkdir(mode=0o500)
    r = cli("etl", "--source", str(small_archive), "--target", f"sqlite:///{tmp_path}/t.db", "--staging", str(ro / "s"))
    assert r.returncode != 0 and "not writable" in r.stderr


def test_version() -> None:
    from importlib.metadata import version

    r = cli("--version")
    assert r.returncode == 0 and r.stdout == f"observer-etl {version('observer-etl')}\n"


def test_help_names_the_config_tables() -> None:
    """Rich reads ``[sources]`` as markup and drops it unless escaped; the help must show it."""
    r = cli("etl", "--help", env={"COLUMNS": "200"})
    assert r.returncode == 0, r.stderr
    assert "a name in [sources] of observer.toml" in r.stdout
    assert "a name in [targets] of observer.toml" in r.stdout


def test_help_says_what_each_option_takes() -> None:
    """A value's kind (a URL, a directory, a size), not Typer's Python type (``<str>``, ``<bool>`` on a flag)."""
    r = cli("etl", "--help", env={"COLUMNS": "200"})
    assert r.returncode == 0, r.stderr
    for option, metavar in [("--source", "PATH|NAME"), ("--target", "URL|NAME"), ("--staging", "DIR"),
                            ("--market", "MARKET"), ("--security-master", "CSV"), ("--holidays", "FILE"),
                            ("--config", "FILE"), ("--unit-size", "SIZE")]:
        assert re.search(rf"{re.escape(option)}\s+{re.escape(metavar)}\s", r.stdout), (option, r.stdout)
    assert "<str>" not in r.stdout and "<path>" not in r.stdout and "<bool>" not in r.stdout
    assert re.search(r"--json\s+Print the run summary", r.stdout), r.stdout
    top = cli("--help", env={"COLUMNS": "200"})
    assert top.returncode == 0 and "--help" in top.stdout and "<bool>" not in top.stdout, top.stdout


def test_a_run_with_nothing_new_imports_neither_pyarrow_nor_numpy(tmp_path: Path, target_url: str) -> None:
    """Importing them (with ADBC's DB-API) is ~0.25 s of a process whose run takes ~0.03 s: a run with
    nothing new, a held-back last line included, must not need them. A run that loads does."""
    src = tmp_path / "archive"
    write_lines(src / "assets/scalp/20260130_13.jsonl", [tick(acc=1), tick(acc=2, execution_time="130513")[:40]], final_newline=False)
    write_lines(src / "assets/swing/20260130.jsonl", [swing()])
    args = ["etl", "--source", str(src), "--target", target_url, "--staging", str(tmp_path / "s"), "--json"]

    def imported() -> tuple[set[str], dict]:  # type: ignore[type-arg]
        r = cli(*args, env={"PYTHONPROFILEIMPORTTIME": "1"})  # python -X importtime
        assert r.returncode == 0, r.stderr
        mods = {line.rsplit("|", 1)[-1].strip() for line in r.stderr.splitlines() if line.startswith("import time:")}
        return {m.split(".")[0] for m in mods} & {"pyarrow", "numpy"}, json.loads(r.stdout)

    first, d = imported()
    assert first == {"pyarrow", "numpy"} and d["loaded"] == 2
    again, d = imported()
    assert again == set()
    assert (d["lines_read"], d["held_back"], d["status"]) == (0, 1, "succeeded")


@pytest.mark.parametrize(
    ("inherited", "user_part"),
    [
        (None, ""),
        ("dirty_decay_ms:0", ",dirty_decay_ms:0"),  # the user's own setting still wins, coming last
        # Polars' defaults as a parent process that imported Polars leaves them (the bench harness, a test):
        ("dirty_decay_ms:500,muzzy_decay_ms:1000", ""),
        ("dirty_decay_ms:500,muzzy_decay_ms:1000,narenas:1", ",narenas:1"),
    ],
)
def test_the_cli_keeps_freed_pages_in_polars_allocator(inherited: str | None, user_part: str) -> None:
    """The CLI sets Polars' jemalloc decay and arenas before Polars is imported; a library import leaves
    them alone."""
    env = {k: v for k, v in os.environ.items() if k != "_RJEM_MALLOC_CONF"}
    if inherited is not None:
        env["_RJEM_MALLOC_CONF"] = inherited
    probe = "import os; import {0}; print(os.environ['_RJEM_MALLOC_CONF'])"
    seen = {
        mod: subprocess.run(
            [sys.executable, "-c", probe.format(mod)], cwd=REPO, env=env, capture_output=True, text=True, check=True
        ).stdout.strip()
        for mod in ("cli", "engine.pipeline")
    }
    polars_own = "dirty_decay_ms:500,muzzy_decay_ms:1000"
    assert seen["cli"] == f"{polars_own},{polars_jemalloc_conf()}{user_part}"
    assert seen["engine.pipeline"] == polars_own + ("," + inherited if inherited else "")
    assert keep_freed_pages_in_polars() is False  # this process imported Polars long ago: too late


def test_the_hosts_and_the_servers_time_zones_change_nothing(tmp_path: Path, target_url: str) -> None:
    """Trade dates, session flags and stored instants come from the records' own offsets and KST, never
    from the clock's zone: the sample archive loaded under TZ=Pacific/Chatham (+12:45, +13:45 in its
    summer), with PostgreSQL's session and database zones elsewhere again, gives the UTC host's tables."""
    ref = f"sqlite:///{tmp_path / 'ref.db'}"
    sample = str(REPO / "bench/sample_archive")
    r = cli("etl", "--source", sample, "--target", ref, "--staging", str(tmp_path / "ref-stg"), "--json", env={"TZ": "UTC"})
    assert r.returncode == 0, r.stderr
    if target_url.startswith("postgresql"):
        rows(target_url, f"ALTER DATABASE {target_url.rsplit('/', 1)[1]} SET timezone = 'America/New_York'")
    r = cli("etl", "--source", sample, "--target", target_url, "--staging", str(tmp_path / "stg"), "--json",
            env={"TZ": "Pacific/Chatham", "PGTZ": "Asia/Kolkata"})
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["loaded"] > 0
    assert db_snapshot(target_url) == db_snapshot(ref)
    assert staged_snapshot(tmp_path / "stg") == staged_snapshot(tmp_path / "ref-stg")
