"""`edgeship inspect ARTIFACT`: ops (delegated or not), tensors, quantization and size by part."""

from __future__ import annotations

import json
from pathlib import Path

import click


@click.command("inspect")
@click.argument("artifact", type=click.Path(path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of tables.")
def command(artifact, as_json):
    """Show an artifact's ops (delegated or not), tensors, quantization and size by part."""
    from edgeship.inspect import inspect_file, print_inspect

    details = inspect_file(artifact)
    if as_json:
        click.echo(json.dumps(details, indent=2, default=str))
    else:
        print_inspect(artifact, details)
