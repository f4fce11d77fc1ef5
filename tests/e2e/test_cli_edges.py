"""What a new user trips over, through the real `cis` command: one line that says what
to do, an exit code of the table, never a traceback, and nothing half-made left behind."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
from pathlib import Path

import pytest

from ..conftest import CIS, CliRunner


def one_line_error(done: subprocess.CompletedProcess[str], code: int) -> str:
    assert done.returncode == code, (done.returncode, done.stdout, done.stderr)
    assert "Traceback" not in done.stderr + done.stdout
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), done.stderr
    return lines[0]


def test_serve_on_a_port_in_use_says_so_in_one_line(cli: CliRunner) -> None:
    cli("init", check=True)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = cli("serve", "--port", str(port))
    line = one_line_error(done, 13)
    assert f"127.0.0.1:{port} is in use (another cis serve?); use --port" in line


def test_serve_on_an_address_not_of_this_machine(cli: CliRunner) -> None:
    cli("init", check=True)
    line = one_line_error(cli("serve", "--host", "192.0.2.1", "--port", "0"), 13)
    assert "not an address of this machine" in line


def test_init_where_a_file_stands_leaves_the_file_alone(tmp_path: Path) -> None:
    blocker = tmp_path / "afile"
    blocker.write_text("mine")
    for target in (blocker, blocker / "node"):
        env = {**os.environ, "CIS_DATA_DIR": str(target)}
        done = subprocess.run([CIS, "init"], env=env, capture_output=True, text=True)
        assert "a file stands in its path" in one_line_error(done, 6)
    assert blocker.read_text() == "mine"


def test_init_where_nothing_may_be_made(tmp_path: Path) -> None:
    if os.geteuid() == 0:
        target = Path("/proc/cis-cannot-be-here")  # even root cannot make a folder in /proc
    else:
        locked = tmp_path / "locked"
        locked.mkdir(mode=0o500)
        target = locked / "node"
    env = {**os.environ, "CIS_DATA_DIR": str(target)}
    done = subprocess.run([CIS, "init"], env=env, capture_output=True, text=True)
    assert f"cannot create {target}" in one_line_error(done, 6)


def test_export_into_a_missing_folder(cli: CliRunner, tmp_path: Path) -> None:
    cli("init", check=True)
    cli("memory", "add", "kept", check=True)
    done = cli("memory", "export", "-o", str(tmp_path / "no" / "such" / "dump.jsonl"))
    assert "there is no folder" in one_line_error(done, 2)
    assert not (tmp_path / "no").exists()


def test_a_zero_length_database_is_refused_not_replaced(cli: CliRunner, data_dir: Path) -> None:
    cli("init", check=True)
    (data_dir / "cis.db").write_bytes(b"")
    for args in (("init",), ("memory", "list"), ("status",)):
        assert "is empty (0 bytes)" in one_line_error(cli(*args), 6)
    assert (data_dir / "cis.db").stat().st_size == 0


def test_a_damaged_header_reads_as_damaged_and_a_wrong_key_as_wrong(
    cli: CliRunner, data_dir: Path
) -> None:
    cli("init", check=True)
    cli("memory", "add", "one", check=True)
    db = data_dir / "cis.db"
    good = db.read_bytes()
    db.write_bytes(b"\xff" * 24 + good[24:])
    assert "is damaged" in one_line_error(cli("memory", "list"), 6)
    db.write_bytes(good)
    key = data_dir / "db.key"
    key.write_text(os.urandom(32).hex() + "\n")
    assert "cannot be opened with this key" in one_line_error(cli("memory", "list"), 5)


def test_version(cli: CliRunner) -> None:
    done = cli("--version")
    assert done.returncode == 0 and done.stdout.startswith("cis 0.")


def test_init_with_a_passphrase_says_what_to_keep(data_dir: Path) -> None:
    env = {**os.environ, "CIS_DATA_DIR": str(data_dir), "CIS_PASSPHRASE": "correct horse"}
    done = subprocess.run([CIS, "init"], env=env, capture_output=True, text=True, check=True)
    assert "passphrase" in done.stdout and "db.salt" in done.stdout
    assert "db.key" not in done.stdout
    assert not (data_dir / "db.key").exists()


def _unshare_works() -> bool:
    if os.geteuid() != 0 or shutil.which("unshare") is None:
        return False
    probe = subprocess.run(["unshare", "--mount", "true"], capture_output=True)
    return probe.returncode == 0


@pytest.mark.skipif(not _unshare_works(), reason="needs root and unshare (CI has both)")
def test_init_on_a_full_disk_leaves_nothing_and_a_later_init_works(tmp_path: Path) -> None:
    """A real full disk: a 64 KiB tmpfs in a mount namespace of its own."""
    mount = tmp_path / "small"
    mount.mkdir()
    script = f"""
set -u
mount -t tmpfs -o size=64k none {mount}
CIS_DATA_DIR={mount}/node {CIS} init 2>{mount}/../err1; echo "first=$?"
ls -A {mount}; echo "listed"
mkdir {mount}/made && CIS_DATA_DIR={mount}/made {CIS} init 2>/dev/null; echo "second=$?"
ls -A {mount}/made; echo "listed-made"
rmdir {mount}/made; dd if=/dev/zero of={mount}/filler bs=1k count=128 2>/dev/null
CIS_DATA_DIR={mount}/full/node {CIS} init 2>/dev/null; echo "full=$?"
ls -A {mount}; echo "listed-full"; rm {mount}/filler
mount -o remount,size=8m {mount}
CIS_DATA_DIR={mount}/node {CIS} init >/dev/null 2>&1; echo "third=$?"
CIS_DATA_DIR={mount}/node {CIS} memory add "after the disk was freed" >/dev/null; echo "add=$?"
"""
    done = subprocess.run(
        ["unshare", "--mount", "sh", "-c", script], capture_output=True, text=True, timeout=120
    )
    out = done.stdout.split()
    assert "first=6" in out, done.stdout + done.stderr
    assert out[out.index("first=6") + 1] == "listed"  # nothing was left in the mount
    assert "second=6" in out
    assert out[out.index("second=6") + 1] == "listed-made"  # the folder it was given: empty
    assert "full=6" in out  # not even the key fits: the folders it made are gone again
    assert out[out.index("full=6") + 1 : out.index("listed-full")] == ["filler"]
    assert "third=0" in out and "add=0" in out
    err = (tmp_path / "err1").read_text()
    assert "Traceback" not in err and err.count("\n") == 1 and "disk full" in err


def test_history_says_what_each_version_changed(cli: CliRunner) -> None:
    cli("init", check=True)
    cli("memory", "set", "editor", "vim", "--tag", "tools", check=True)
    cli("memory", "update", "editor", "--tag", "tools", "--tag", "daily", check=True)
    cli("memory", "update", "editor", "--metadata", '{"since": 2019}', check=True)
    cli("memory", "set", "editor", "neovim", check=True)
    lines = cli("memory", "history", "editor", check=True).stdout.splitlines()
    assert lines[0].endswith("vim [tools]")
    assert lines[1].endswith("tags +daily")
    assert lines[2].endswith('metadata: {"since":2019}')
    assert lines[3].endswith("text: neovim")


def test_import_names_every_bad_line_at_once_and_skip_existing(
    cli: CliRunner, tmp_path: Path
) -> None:
    cli("init", check=True)
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"text": "fine"}\nnot json\n{"text": ""}\n[1]\n{"text": "x", "colour": 1}\n')
    done = cli("memory", "import", str(bad))
    assert done.returncode == 2
    for number in (2, 3, 4, 5):
        assert f"line {number}:" in done.stderr
    assert "line 1:" not in done.stderr
    good = tmp_path / "good.jsonl"
    good.write_text('{"text": "one"}\n{"text": "two", "key": "k"}\n')
    first = cli("memory", "import", str(good), "--skip-existing", "--json", check=True)
    assert json.loads(first.stdout) == {"imported": 2, "skipped": 0}
    again = cli("memory", "import", str(good), "--skip-existing", "--json", check=True)
    assert json.loads(again.stdout) == {"imported": 0, "skipped": 2}
    dump = tmp_path / "dump.jsonl"
    cli("memory", "export", "-o", str(dump), check=True)
    third = cli("memory", "import", str(dump), "--skip-existing", "--json", check=True)
    assert json.loads(third.stdout) == {"imported": 0, "skipped": 2}
    listed = json.loads(cli("memory", "list", "--json", check=True).stdout)
    assert len(listed["items"]) == 2


def test_plain_dates_and_times_ago_and_a_page_of_1000(cli: CliRunner) -> None:
    cli("init", check=True)
    cli("memory", "add", "new today", check=True)
    cli("memory", "add", "long ago", "--event-at", "2020-01-01", check=True)
    for since, expected in (("7d", ["new today"]), ("2019-06-01", ["new today", "long ago"])):
        done = cli("memory", "list", "--since", since, "--json", check=True)
        assert [m["text"] for m in json.loads(done.stdout)["items"]] == expected
    done = cli("memory", "list", "--until", "2021-01-01", "--limit", "1000", "--json", check=True)
    assert [m["text"] for m in json.loads(done.stdout)["items"]] == ["long ago"]
    assert "is not a time" in one_line_error(cli("memory", "list", "--since", "yesterday"), 2)
    too_late = cli("memory", "list", "--since", str(2**63))
    assert "outside the years 1 to 9999" in one_line_error(too_late, 2)


def test_cli_wording_names_cli_commands(cli: CliRunner) -> None:
    cli("init", check=True)
    cli("memory", "add", "first", "--key", "k", check=True)
    line = one_line_error(cli("memory", "add", "second", "--key", "k"), 4)
    assert "use `cis memory set k TEXT --scope global` to replace it" in line
    assert "set()" not in line


@pytest.mark.parametrize(
    "args",
    [
        ("memory", "get", "nothing"),
        ("memory", "search", ""),
        ("memory", "add", "x", "--metadata", "[1"),
        ("memory", "import", "/no/such/file.jsonl"),
        ("dag", "run", "/no/such/flow.toml"),
        ("dag", "status", "no-such-run"),
        ("skill", "run", "no-such-skill"),
        ("token", "revoke", "nobody"),
    ],
)
def test_no_traceback_from_bad_requests(cli: CliRunner, args: tuple[str, ...]) -> None:
    cli("init", check=True)
    done = cli(*args)
    assert done.returncode in (2, 3)
    one_line_error(done, done.returncode)


def test_skill_do_refuses_when_no_skill_fits(cli: CliRunner) -> None:
    cli("init", check=True)
    examples = Path(__file__).parents[2] / "examples" / "skills"
    for name in ("wordcount", "recall"):
        cli("skill", "install", str(examples / name), check=True)
    line = one_line_error(cli("skill", "do", "bake a chocolate cake", "--yes"), 2)
    assert "no installed skill fits" in line and "cis skill run NAME" in line
    done = cli("skill", "do", "count the words of this", "--yes", "--input", '{"text": "a b c"}')
    assert done.returncode == 0 and json.loads(done.stdout.splitlines()[-1])["words"] == 3
