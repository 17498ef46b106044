"""The `ollamapy` command. Subcommands are imported lazily so `ollamapy list` never loads the
server stack (aiohttp, pydantic models of the server) and `--help` starts fast."""

from __future__ import annotations

import importlib
import importlib.util
import sys

import click

# name -> "module:function"; aliases share a target.
COMMANDS: dict[str, str] = {
    "serve": "ollamapy.cli.serve:serve",
    "worker": "ollamapy.cli.worker:worker",
    "runners": "ollamapy.cli.runners:runners",
    "create": "ollamapy.cli.models:create",
    "show": "ollamapy.cli.models:show",
    "run": "ollamapy.cli.run:run",
    "stop": "ollamapy.cli.ps:stop",
    "pull": "ollamapy.cli.registry:pull",
    "push": "ollamapy.cli.registry:push",
    "list": "ollamapy.cli.models:list_models",
    "ls": "ollamapy.cli.models:list_models",
    "ps": "ollamapy.cli.ps:ps",
    "cp": "ollamapy.cli.models:copy",
    "rm": "ollamapy.cli.models:remove",
    "launch": "ollamapy.cli.launch:launch",
}
HIDDEN = {"ls"}


class LazyGroup(click.Group):
    def list_commands(self, ctx: click.Context) -> list[str]:
        return [n for n in COMMANDS if n not in HIDDEN and self._available(n)]

    @staticmethod
    def _available(name: str) -> bool:
        module = COMMANDS[name].split(":")[0]
        return importlib.util.find_spec(module) is not None

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        target = COMMANDS.get(name)
        if target is None or not self._available(name):
            return None
        module, attr = target.split(":")
        cmd: click.Command = getattr(importlib.import_module(module), attr)
        return cmd


def print_version(ctx: click.Context, _param: click.Parameter, value: bool) -> None:
    if not value or ctx.resilient_parsing:
        return
    from ollamapy.cli.version import show_version

    show_version()
    ctx.exit(0)


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]},
             invoke_without_command=True)
@click.option("-v", "--version", is_flag=True, expose_value=False, is_eager=True,
              callback=print_version, help="Show version information")
@click.pass_context
def cli(ctx: click.Context) -> None:
    """Large language model runner"""
    if ctx.invoked_subcommand is None:
        click.echo(ctx.get_help())


def main() -> None:
    try:
        cli(standalone_mode=True)
    except KeyboardInterrupt:
        sys.exit(130)


if __name__ == "__main__":
    main()
