"""Output flags (`eval --out`, `embed --out`, `embed --html`) never replace anything but a
regular file: standard output by name, devices and FIFOs written into (never replaced), links,
sockets, block devices and folders refused in one line that names the flag, and two flags that
name one file refused (`atld.fileio.write_output`, docs/security.md "Output files")."""

from __future__ import annotations

import os
import socket
import stat
import threading

import pytest

from atld.cli import main as cli_main
from atld.errors import ConfigError
from atld.fileio import atomic_write, check_distinct_outputs, check_output_file, write_output


def _special(tmp_path, kind: str):
    """A path of `kind` under tmp_path (and what keeps it alive), or skip when the system lacks it."""
    p = tmp_path / kind
    if kind == "fifo":
        os.mkfifo(p)
    elif kind == "socket":
        s = socket.socket(socket.AF_UNIX)
        s.bind(str(p))
        return p, s
    elif kind == "link-to-file":
        (tmp_path / "victim").write_text("precious")
        p.symlink_to(tmp_path / "victim")
    elif kind == "dangling-link":
        p.symlink_to(tmp_path / "nowhere")
    elif kind == "link-to-dir":
        p.symlink_to(tmp_path)
    elif kind == "dir":
        p.mkdir()
    return p, None


@pytest.mark.parametrize("kind, expected", [
    ("socket", "is a socket; refusing"),
    ("link-to-file", "is a symbolic link (a link to a regular file)"),
    ("dangling-link", "is a symbolic link (a dangling link)"),
    ("link-to-dir", "is a symbolic link (a link to a directory)"),
    ("dir", "is a directory"),
])
def test_outputs_that_are_not_ours_to_replace_are_refused_in_one_line(tmp_path, kind, expected):
    p, keep = _special(tmp_path, kind)
    before = os.lstat(p)
    for flag in ("--out", "--html"):
        with pytest.raises(ConfigError) as err:
            write_output(p, "a,b\n", flag)
        assert str(err.value).startswith(f"{flag} ") and expected in str(err.value) and "\n" not in str(err.value)
    after = os.lstat(p)
    assert (after.st_ino, after.st_mode) == (before.st_ino, before.st_mode)  # never replaced
    if kind == "link-to-file":
        assert (tmp_path / "victim").read_text() == "precious"
    if keep is not None:
        keep.close()


def test_a_block_device_is_refused(tmp_path):
    blocks = [f"/dev/{n}" for n in ("loop0", "sda", "vda", "nvme0n1") if os.path.exists(f"/dev/{n}")]
    blocks = [b for b in blocks if stat.S_ISBLK(os.stat(b).st_mode)]
    if not blocks:
        pytest.skip("no block device to point at")
    with pytest.raises(ConfigError, match="is a block device; refusing"):
        check_output_file(blocks[0], "--out")


def test_devices_and_fifos_are_written_into_never_replaced(tmp_path, capsys):
    null = os.stat("/dev/null")
    assert write_output("/dev/null", "x" * 5000, "--out") == "/dev/null"
    assert os.stat("/dev/null").st_ino == null.st_ino and stat.S_ISCHR(os.stat("/dev/null").st_mode)
    if os.path.exists("/dev/full"):  # a full device: one line naming the flag, the node untouched
        with pytest.raises(ConfigError, match=r"^writing --html failed: no space left"):
            write_output("/dev/full", "x", "--html")
        assert stat.S_ISCHR(os.stat("/dev/full").st_mode)
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    with pytest.raises(ConfigError, match="is a FIFO that no process reads"):  # refused, not a hang
        write_output(fifo, "x", "--out")
    got = []
    reader = threading.Thread(target=lambda: got.append(open(fifo, "rb").read()))
    reader.start()
    for _ in range(200):  # the reader has opened its end
        try:
            write_output(fifo, "hello,fifo\n", "--out")
            break
        except ConfigError:
            threading.Event().wait(0.01)
    reader.join(5)
    assert got == [b"hello,fifo\n"] and stat.S_ISFIFO(os.lstat(fifo).st_mode)
    link = tmp_path / "to-null"  # a link to a device (as /dev/stderr is) is written through
    link.symlink_to("/dev/null")
    write_output(link, "x", "--out")
    assert link.is_symlink()
    for name in ("-", "/dev/stdout"):
        capsys.readouterr()
        assert write_output(name, "to stdout\n", "--out") == "standard output"
        assert capsys.readouterr().out == "to stdout\n"
    capsys.readouterr()
    assert write_output("/dev/stderr", "to stderr\n", "--out") == "standard error"
    assert capsys.readouterr().err == "to stderr\n"


def test_atomic_write_never_replaces_what_is_not_a_regular_file(tmp_path):
    fifo, target = tmp_path / "fifo", tmp_path / "t"
    os.mkfifo(fifo)
    (tmp_path / "t-real").write_text("real")
    target.symlink_to(tmp_path / "t-real")
    for p in (fifo, target, tmp_path / "sub"):
        if p.name == "sub":
            p.mkdir()
        with pytest.raises(OSError, match="refusing to replace it"):
            atomic_write(p, b"new")
    assert stat.S_ISFIFO(os.lstat(fifo).st_mode) and target.is_symlink() and (tmp_path / "t-real").read_text() == "real"
    assert not [p for p in tmp_path.iterdir() if ".tmp-" in p.name]  # no temporary file left
    atomic_write(tmp_path / "plain", b"1")
    atomic_write(tmp_path / "plain", b"2")  # a regular file is replaced as before
    assert (tmp_path / "plain").read_bytes() == b"2"


def test_two_flags_naming_one_file_are_refused(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "d").mkdir()
    (tmp_path / "a.csv").write_text("x")
    os.link(tmp_path / "a.csv", tmp_path / "hard.csv")
    (tmp_path / "dirlink").symlink_to(tmp_path / "d")
    same = [("x.csv", "x.csv"), ("x.csv", "./x.csv"), ("x.csv", str(tmp_path / "x.csv")), ("x.csv", "d/../x.csv"),
            ("d/y.html", "dirlink/y.html"), ("a.csv", "hard.csv"), ("-", "/dev/stdout"), ("/dev/null", "/dev/null"),
            ("/dev/stderr", "/dev/fd/2")]
    for a, b in same:
        with pytest.raises(ConfigError, match="--out and --html name the same file"):
            check_distinct_outputs({"--out": a, "--html": b})
    for a, b in [("x.csv", "x.html"), (None, "x.html"), ("-", "x.html"), ("d/x", "x"), ("-", "/dev/stderr")]:
        check_distinct_outputs({"--out": a, "--html": b})


@pytest.mark.parametrize("argv, expected", [
    (["--out", "{tmp}/same", "--html", "{tmp}/same"], "--out and --html name the same file"),
    (["--out", "{tmp}/o.csv", "--html", "{tmp}/./o.csv"], "--out and --html name the same file"),
    (["--out", "{tmp}/o.csv", "--html", "{tmp}"], "--html "),  # an error about --html names --html
    (["--out", "{tmp}/o.csv", "--html", "{tmp}/link"], "--html "),
    (["--out", "{tmp}/link"], "--out "),
    (["--out", "{tmp}/sock"], "--out "),
])
def test_embed_refuses_bad_outputs_before_any_work(tmp_path, capsys, monkeypatch, latent_runs, argv, expected):
    import atld.runs.store

    (tmp_path / "target").write_text("keep")
    (tmp_path / "link").symlink_to(tmp_path / "target")
    s = socket.socket(socket.AF_UNIX)
    s.bind(str(tmp_path / "sock"))
    monkeypatch.setattr(atld.runs.store, "load_checkpoint", lambda *a, **k: pytest.fail("loaded before checking"))
    argv = ["embed", "--checkpoint", str(latent_runs[True].path), "--trajectories", "2", "--attack", "fgsm",
            *[a.replace("{tmp}", str(tmp_path)) for a in argv]]
    assert cli_main(argv) == 2
    err = capsys.readouterr().err
    s.close()
    assert err.count("\n") == 1 and err.startswith(f"error: {expected}"), err
    assert (tmp_path / "target").read_text() == "keep" and (tmp_path / "link").is_symlink()


def test_eval_writes_into_dev_null_and_reports_dev_full_in_one_line(tmp_path, capsys, latent_runs):
    null = os.stat("/dev/null")
    base = ["eval", "--checkpoint", str(latent_runs[False].path), "--attacks", "natural", "--limit", "8", "--quiet"]
    assert cli_main([*base, "--out", "/dev/null"]) == 0
    assert os.stat("/dev/null").st_ino == null.st_ino and stat.S_ISCHR(os.stat("/dev/null").st_mode)
    if os.path.exists("/dev/full"):
        capsys.readouterr()
        assert cli_main([*base, "--out", "/dev/full"]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and "writing --out failed: no space left" in err, err
        assert stat.S_ISCHR(os.stat("/dev/full").st_mode)
    capsys.readouterr()
    assert cli_main([*base, "--out", "-", "--format", "csv"]) == 0
    assert capsys.readouterr().out.startswith("attack,")
