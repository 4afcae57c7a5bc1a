"""Failure and alert notifications: always a console line, and a webhook POST when configured."""

from __future__ import annotations

import json
import urllib.request
from collections.abc import Callable
from typing import Any

from lib.core.config import EnvConfig


def notify(env: EnvConfig, message: str, out: Callable[[str], None], details: dict[str, Any] | None = None) -> None:
    """The notification hook (job failures, alerts): a console line always; a JSON POST of
    {environment, text, **details} when a webhook is configured."""
    out(f"NOTIFY [{env.name}] {message}")
    if not env.webhook_url:
        return
    body = json.dumps({"environment": env.name, "text": message, **(details or {})}).encode()
    request = urllib.request.Request(env.webhook_url, data=body, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=5):
            pass
    except OSError as exc:
        out(f"NOTIFY webhook {env.webhook_url} failed: {exc}")
