"""The click group class every edgeship group uses: typos get a suggestion."""

from __future__ import annotations

import difflib

import click


class SuggestingGroup(click.Group):
    """`edgeship exprot` -> "No such command 'exprot'. Did you mean 'export'?"."""

    def resolve_command(self, ctx, args):
        name = args[0] if args else None
        if name and name not in self.commands and not name.startswith("-"):
            close = difflib.get_close_matches(name, self.list_commands(ctx), n=1, cutoff=0.5)
            hint = f" Did you mean '{close[0]}'?" if close else ""
            ctx.fail(f"No such command '{name}'.{hint} Commands: {', '.join(self.list_commands(ctx))}")
        return super().resolve_command(ctx, args)
