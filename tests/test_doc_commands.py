"""Every ``pathgeom ...`` command shown in README.md and docs/ is a valid command line.

The shell examples are too slow to run in full (training runs take minutes), so each is
parsed by the real argument parser: a renamed or removed flag, a wrong choice or a bad value
makes this fail.  Their behaviour is tested in test_cli.py and test_cli_train.py.
"""

import pathlib
import re
import shlex

import pytest

from pathgeom import cli

ROOT = pathlib.Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md"] + sorted((ROOT / "docs").rglob("*.md"))


def _commands():
    found = []
    for page in PAGES:
        for lang, body in re.findall(r"```(\w*)\n(.*?)```", page.read_text(), flags=re.S):
            if lang not in ("", "sh", "bash", "console"):
                continue
            text = body.replace("\\\n", " ")
            for line in text.splitlines():
                line = line.split("#", 1)[0].strip()
                if line.startswith("pathgeom "):
                    found.append(pytest.param(line, id=f"{page.name}: {line[:60]}"))
    return found


COMMANDS = _commands()


def test_the_docs_show_commands():
    assert len(COMMANDS) >= 10


@pytest.mark.parametrize("line", COMMANDS)
def test_documented_command_parses(line):
    argv = shlex.split(line)[1:]
    argv = [a for a in argv if a not in ("[sizes]",)]
    if any(a.startswith("[") for a in argv):  # a usage synopsis, not a command
        pytest.skip("usage synopsis")
    cli._parser().parse_args(argv)  # SystemExit (exit 2) on anything invalid
