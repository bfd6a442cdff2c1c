"""The README's commands are the CLI's: every ``batchcap ...`` line in its code blocks parses through the real
parser (and a run's or a check's flags build a config), so the docs cannot drift from the CLI again (issue 21).

A dry parse: no ``--help``, nothing is run, no file is written. ``...`` in a command is the README's "and the
rest" and is left out; ``\\`` continues a command on the next line; ``#`` starts a comment.
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

from batchcap.cli.commands import COMMANDS, build_parser
from batchcap.cli.options import config_from_args

REPO = Path(__file__).parents[1]
README = REPO / "README.md"
_FENCE = re.compile(r"^```[^\n]*\n(.*?)^```", re.DOTALL | re.MULTILINE)


def readme_commands(text: str) -> list[str]:
    """The ``batchcap`` commands in ``text``'s fenced code blocks, continuation lines joined."""
    commands = []
    for block in _FENCE.findall(text):
        logical = re.sub(r"\s*\\\n\s*", " ", block)
        for line in logical.splitlines():
            line = line.strip()
            if line.startswith("batchcap "):
                commands.append(line)
    return commands


COMMAND_LINES = readme_commands(README.read_text(encoding="utf-8"))


def test_the_readme_shows_every_command() -> None:
    shown = {shlex.split(line, comments=True)[1] for line in COMMAND_LINES}
    assert shown >= {"run", "check", "export", "merge", "bench"}, shown
    assert len(COMMAND_LINES) >= 15


def test_the_extraction_reads_blocks_continuations_and_comments() -> None:
    text = "x\n```sh\nbatchcap run a/ --out o.jsonl \\\n    --model m  # note\nmake demo\n```\nbatchcap prose\n"
    assert readme_commands(text) == ["batchcap run a/ --out o.jsonl --model m  # note"]


@pytest.mark.parametrize("line", COMMAND_LINES)
def test_each_readme_command_parses(line: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(REPO)  # profiles such as configs/endpoint.toml are named from the repository's root
    words = shlex.split(line, comments=True)[1:]
    argv = [word for word in words if word not in ("...", "&")]  # "&": started in the background
    assert "--help" not in argv
    assert argv[0] in COMMANDS, f"the README names a command the CLI does not have: {line}"
    parser = build_parser(argv[0])
    try:
        ns = parser.parse_args(argv)
    except SystemExit as exc:
        pytest.fail(f"the README's command does not parse (exit {exc.code}): {line}")
    if argv[0] in ("run", "check"):  # the flags and profiles make a config, as the command would build it
        whole = argv[0] == "run" and "..." not in words  # "..." leaves the target out on purpose
        config_from_args(ns, input_dir=ns.input_dir, validate=whole)


def test_the_bench_demo_takes_as_long_in_the_readme_as_in_its_help(capsys: pytest.CaptureFixture[str]) -> None:
    """Measured: 41.5 s twice with two targets; 62.5 s with the router provider added (issue 18; this 2-core
    machine, loaded); the two texts say one thing."""
    from batchcap.cli import main

    assert main(["bench", "--demo", "--help"]) == 0
    helped = re.search(r"batchcap bench --demo\s+# offline: [^\n]*?(~\d+ (?:s|min\w*))", capsys.readouterr().out)
    documented = re.search(r"make bench-demo\s+# = batchcap bench --demo[^\n]*?(~\d+ (?:s|min\w*))",
                           README.read_text(encoding="utf-8"))
    assert helped, "bench --help no longer says how long --demo takes"
    assert documented, "the README no longer says how long make bench-demo takes"
    assert helped[1] == documented[1] == "~1 min"


def test_the_readme_stands_on_its_own() -> None:
    """A user of the package has no ``../shared/protocol.md``: the README says what the emulator does itself."""
    text = README.read_text(encoding="utf-8")
    assert "protocol.md" not in text
    assert "../shared" not in text
    assert "--models" in text  # what the emulator serves, and what it answers for other ids
    assert "`bench.html`" in text  # the bench's best output is named
    assert "until a preparation step lands" not in text
