"""The shapes generator's progress: a bar on a terminal only, else a few plain lines, never a
carriage return in a log (visionkit.utils.cli.track)."""

import io
import re

import pytest

from visionkit.data import ensure_shapes
from visionkit.utils.cli import track


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_plain_lines_at_start_quarters_and_end():
    out = io.StringIO()
    assert list(track(range(8), 8, "counting", False, "things", out)) == list(range(8))
    lines = out.getvalue().splitlines()
    assert lines[:4] == [
        "counting: 8 things ...",
        "counting: 2/8 things",
        "counting: 4/8 things",
        "counting: 6/8 things",
    ]
    assert re.fullmatch(r"counting: done, 8 things in \d+\.\d s", lines[4]) and len(lines) == 5
    assert "\r" not in out.getvalue()


@pytest.mark.parametrize("total", [0, 1, 3])
def test_few_items_print_no_quarter_twice_and_nothing_past_the_end(total):
    out = io.StringIO()
    list(track(range(total), total, "x", False, "items", out))
    lines = out.getvalue().splitlines()
    assert lines[0] == f"x: {total} items ..." and lines[-1].startswith(f"x: done, {total} items")
    middle = lines[1:-1]
    assert len(middle) == len(set(middle)) <= 3
    assert all(0 < int(m.split()[1].split("/")[0]) < total for m in middle)


def test_a_loop_stopped_early_says_no_done():
    out = io.StringIO()
    for i in track(range(8), 8, "x", False, "items", out):
        if i == 4:
            break
    assert "done" not in out.getvalue()


def test_a_bar_only_when_stderr_is_a_terminal(monkeypatch):
    err = Terminal()
    monkeypatch.setattr("sys.stderr", err)
    out = io.StringIO()
    list(track(range(5), 5, "bar", True, "items", out))
    assert "\r" in err.getvalue() and out.getvalue() == ""  # tqdm's redraws, on the terminal
    err2 = Terminal()
    monkeypatch.setattr("sys.stderr", err2)
    list(track(range(5), 5, "bar", False, "items", out))  # --no-progress: lines, even there
    assert err2.getvalue() == "" and out.getvalue().startswith("bar: 5 items ...")


@pytest.mark.parametrize("progress", [False, True])
def test_generating_into_a_captured_stream_writes_no_carriage_return(tmp_path, capfd, progress):
    # progress off (--no-progress), or wanted but stderr is a pipe (a log file): plain lines
    ensure_shapes(tmp_path, "val", num_images=8, image_size=64, progress=progress)
    out, err = capfd.readouterr()
    assert "\r" not in out + err and err == ""
    lines = out.splitlines()
    assert lines[0] == "generating shapes/val: 8 images ..." and len(lines) == 5
    assert lines[-1].startswith("generating shapes/val: done, 8 images in ")
    ensure_shapes(tmp_path, "val", num_images=8, image_size=64, progress=progress)
    assert capfd.readouterr() == ("", "")  # cached: nothing generated, nothing said
