"""What every route reads from the app: the running :class:`~gateway.state.Gateway` and the server settings."""

from __future__ import annotations

from fastapi import Request

from gateway.settings import Settings
from gateway.state import Gateway


def gateway_of(request: Request) -> Gateway:
    """The gateway started by the app's lifespan (``app.state.gateway``)."""
    gw: Gateway = request.app.state.gateway
    return gw


def settings_of(request: Request) -> Settings:
    """The settings the app was created with (limits on request size, text length, inputs)."""
    settings: Settings = request.app.state.settings
    return settings
