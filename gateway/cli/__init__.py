"""The ``greenlist`` command line: one Typer app, one module per command group.

=====================  ==========================================================
``serve``              :mod:`gateway.cli.serve`
``policy``             :mod:`gateway.cli.policy` (check, schema, diff)
``audit``              :mod:`gateway.cli.audit` (query)
``keys``               :mod:`gateway.cli.keys` (API keys); ``keys export-public`` in :mod:`gateway.cli.secrets`
``secrets``            :mod:`gateway.cli.secrets` (``init DIR``: shared keys for several replicas)
``scan``               :mod:`gateway.cli.scan` (datasets through verify / moderate / guardrails)
``verify``, ``verify-certificate``, ``watermark-keys``
                       :mod:`gateway.cli.watermark`
guardrail commands     each guardrail package's own Typer app, listed in
                       :data:`guardrails.COMMANDS` (mounted as a group, or flat)
=====================  ==========================================================
"""

from __future__ import annotations

import importlib

import typer

from gateway.cli import watermark
from gateway.cli.audit import audit_app
from gateway.cli.keys import keys_app
from gateway.cli.policy import policy_app
from gateway.cli.scan import scan
from gateway.cli.secrets import export_public, secrets_app
from gateway.cli.serve import serve
from guardrails import COMMANDS

app = typer.Typer(
    help="Greenlist: guardrail and watermarking gateway for LLMs.", no_args_is_help=True, add_completion=False
)
app.command("serve")(serve)
app.command("scan")(scan)
app.add_typer(policy_app, name="policy")
keys_app.command("export-public")(export_public)
app.add_typer(keys_app, name="keys")
app.add_typer(secrets_app, name="secrets")
app.add_typer(audit_app, name="audit")
app.add_typer(watermark.keys_app, name="watermark-keys")
app.command("verify")(watermark.verify)
app.command("verify-certificate")(watermark.verify_certificate)
for group, target in COMMANDS.items():
    module, _, attr = target.partition(":")
    sub: typer.Typer = getattr(importlib.import_module(module), attr)
    if group.startswith("-"):  # flat: the group's commands at the top level
        app.registered_commands.extend(sub.registered_commands)
    else:
        app.add_typer(sub, name=group)


if __name__ == "__main__":
    app()
