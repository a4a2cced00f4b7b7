"""Greenlist gateway: OpenAI-compatible API, backends, request pipeline and CLI."""
