"""The ``ctdhub`` command as a newcomer meets it: help, version, a bad setting, Ctrl-C."""

from __future__ import annotations

import signal
import socket
from collections.abc import Iterator
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from hub import __version__
from hub.cli import main
from tests.hub_core.processes import BIN, free_port, hub_environment, port_is_free, start


def leaf_commands(
    group: click.Group, path: tuple[str, ...] = ()
) -> Iterator[tuple[tuple[str, ...], click.Command]]:
    """Yield every runnable command under ``group`` with its words."""
    for name, command in group.commands.items():
        if isinstance(command, click.Group):
            yield from leaf_commands(command, (*path, name))
        else:
            yield (*path, name), command


def runnable_arguments(command: click.Command, tmp_path: Path) -> list[str]:
    """Return arguments that get ``command`` past parsing: its required parameters, filled."""
    words: list[str] = []
    for parameter in command.params:
        if not parameter.required:
            continue
        if isinstance(parameter.type, click.Choice):
            value = str(parameter.type.choices[0])
        elif isinstance(parameter.type, click.types.IntParamType | click.types.FloatParamType):
            value = "1"
        elif isinstance(parameter.type, click.Path):
            value = str(tmp_path / "out.csv")
        else:
            value = "x"
        if isinstance(parameter, click.Option):
            words.append(parameter.opts[0])
        words.append(value)
    return words


def test_help_describes_ctdhub_commands_not_flask_options() -> None:
    result = CliRunner().invoke(main, ["--help"])
    assert result.exit_code == 0
    for command in ("db", "keys", "admin", "serve", "release"):
        assert f"  {command} " in result.output
    for flask_option in ("--app", "--env-file", "--debug", "FLASK_APP"):
        assert flask_option not in result.output
    assert ".venv/bin" in result.output


def test_version_is_ctdhubs() -> None:
    result = CliRunner().invoke(main, ["--version"])
    assert result.exit_code == 0
    assert result.output == f"ctdhub {__version__}\n"
    assert "Flask" not in result.output and "Python" not in result.output


@pytest.mark.parametrize("words", [words for words, _ in leaf_commands(main)], ids=" ".join)
def test_an_unknown_setting_is_one_line_for_every_command(
    words: tuple[str, ...], tmp_path: Path
) -> None:
    command = dict(leaf_commands(main))[words]
    args = [*words, *runnable_arguments(command, tmp_path)]
    result = CliRunner().invoke(main, args, env={"CTDHUB_CLIENT_SECRET": "from the toolkit"})
    assert isinstance(result.exception, SystemExit), result.exception
    assert result.exit_code == 1
    lines = result.output.splitlines()
    assert len(lines) == 1, result.output
    assert lines[0].startswith("Error: unknown setting CTDHUB_CLIENT_SECRET")
    assert "from the toolkit" not in result.output  # the value is nobody's business


def test_serve_with_an_unknown_setting_is_one_line_not_a_traceback(tmp_path: Path) -> None:
    env = hub_environment(tmp_path, {"CTDHUB_NO_SUCH_SETTING": "1"})
    run = start([str(BIN / "ctdhub"), "serve", "--port", str(free_port())], env)
    assert run.finish() == 1
    assert len(run.lines) == 1, run.lines
    assert run.lines[0].startswith("Error: unknown setting CTDHUB_NO_SUCH_SETTING")


def test_the_first_ctrl_c_stops_serve(tmp_path: Path) -> None:
    port = free_port()
    run = start([str(BIN / "ctdhub"), "serve", "--port", str(port)], hub_environment(tmp_path))
    run.wait_for("ctdhub serving on")
    assert not port_is_free(port)
    run.process.send_signal(signal.SIGINT)
    assert run.finish() == 0
    assert run.lines[-1] == "ctdhub stopped"
    assert port_is_free(port)


def test_serve_on_a_taken_port_is_one_line(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        run = start([str(BIN / "ctdhub"), "serve", "--port", str(port)], hub_environment(tmp_path))
        assert run.finish() == 1
    assert len(run.lines) == 1, run.lines
    assert run.lines[0].startswith(f"Error: cannot serve on 127.0.0.1:{port}")
    assert "--port" in run.lines[0]
