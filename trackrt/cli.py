"""The `trackrt` command. Each sub-command lives beside its stage and is imported only when used."""

from __future__ import annotations

import importlib
import importlib.util

import click

from trackrt import __version__

COMMANDS: dict[str, str] = {
    "simulate": "trackrt.data.cli:simulate",
    "sim-report": "trackrt.data.cli:sim_report",
    "train": "trackrt.train.cli:train",
    "evaluate": "trackrt.train.cli:evaluate",
    "thresholds": "trackrt.train.cli:thresholds",
    "compare": "trackrt.metrics.cli:compare",
    "grow": "trackrt.train.cli:grow",
    "average": "trackrt.train.cli:average",
    "export": "trackrt.export.cli:export",
    "validate": "trackrt.export.cli:validate",
    "run": "trackrt.runtime.cli:run",
    "build-engines": "trackrt.runtime.cli:build_engines_command",
    "demo": "trackrt.demo:demo",
}


def _module_exists(target: str) -> bool:
    module = target.split(":")[0]
    try:
        return importlib.util.find_spec(module) is not None
    except ModuleNotFoundError:
        return False


class LazyGroup(click.Group):
    """A click group whose commands are imported on first use, so `trackrt --help` stays fast."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(name for name, target in COMMANDS.items() if _module_exists(target))

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        target = COMMANDS.get(cmd_name)
        if target is None or not _module_exists(target):
            return None
        module_name, attr = target.split(":")
        return getattr(importlib.import_module(module_name), attr)


@click.group(cls=LazyGroup)
@click.version_option(__version__, prog_name="trackrt")
def main() -> None:
    """Track reconstruction with transformers: simulate, train, export, run."""


if __name__ == "__main__":
    main()
