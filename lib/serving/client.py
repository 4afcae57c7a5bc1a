"""A small client of the serving REST API (the documented routes only), used by the
deployment job, the tests and the benchmarks. Any HTTP client works the same way.
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from typing import Any

from lib.core.errors import LakehouseError


class ServingError(LakehouseError):
    """The server answered an error: its status, error_code and message."""

    def __init__(self, status: int, error_code: str, message: str):
        super().__init__(f"{status} {error_code}: {message}")
        self.status, self.error_code = status, error_code


class Client:
    def __init__(self, url: str, token: str, timeout: float = 60.0):
        self.url, self.token, self.timeout = url.rstrip("/"), token, timeout

    def call(self, method: str, path: str, body: Any = None) -> tuple[int, dict[str, str], bytes]:
        """One request; returns (status, headers, body) for any status."""
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(
            self.url + path,
            data=data,
            method=method,
            headers={"Authorization": f"Bearer {self.token}", "Content-Type": "application/json"},
        )
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                return response.status, dict(response.headers), response.read()
        except urllib.error.HTTPError as exc:
            return exc.code, dict(exc.headers), exc.read()
        except (urllib.error.URLError, OSError) as exc:
            raise LakehouseError(f"serving server at {self.url} does not answer: {exc}") from None

    def _json(self, method: str, path: str, body: Any = None) -> dict:
        status, _, raw = self.call(method, path, body)
        doc = json.loads(raw or b"{}") if raw.strip().startswith(b"{") else {"message": raw.decode(errors="replace")}
        if status >= 400:
            raise ServingError(status, doc.get("error_code", "ERROR"), doc.get("message", ""))
        return doc

    def create(self, name: str, config: dict) -> dict:
        return self._json("POST", "/api/2.0/serving-endpoints", {"name": name, "config": config})

    def get(self, name: str) -> dict | None:
        try:
            return self._json("GET", f"/api/2.0/serving-endpoints/{name}")
        except ServingError as exc:
            if exc.status == 404:
                return None
            raise

    def list(self) -> list[dict]:
        return self._json("GET", "/api/2.0/serving-endpoints").get("endpoints", [])

    def update(self, name: str, config: dict) -> dict:
        return self._json("PUT", f"/api/2.0/serving-endpoints/{name}/config", config)

    def delete(self, name: str) -> None:
        self._json("DELETE", f"/api/2.0/serving-endpoints/{name}")

    def metrics(self, name: str) -> str:
        status, _, raw = self.call("GET", f"/api/2.0/serving-endpoints/{name}/metrics")
        if status != 200:
            raise ServingError(status, "ERROR", raw.decode(errors="replace"))
        return raw.decode()

    def query(self, name: str, body: dict) -> tuple[int, dict[str, str], dict]:
        status, headers, raw = self.call("POST", f"/serving-endpoints/{name}/invocations", body)
        return status, {k.lower(): v for k, v in headers.items()}, json.loads(raw)

    def wait(self, name: str, timeout: float = 300.0) -> dict:
        """Poll until the endpoint's config update is no longer IN_PROGRESS; returns it."""
        deadline = time.monotonic() + timeout
        while True:
            endpoint = self.get(name)
            if endpoint is None:
                raise ServingError(404, "RESOURCE_DOES_NOT_EXIST", f"endpoint {name!r} does not exist")
            if endpoint["state"]["config_update"] != "IN_PROGRESS":
                return endpoint
            if time.monotonic() > deadline:
                raise LakehouseError(f"endpoint {name} is still updating after {timeout:.0f} s")
            time.sleep(0.2)


def failure_reason(endpoint: dict) -> str:
    """Why the pending config failed, from its served entities' state messages."""
    entities = (endpoint.get("pending_config") or {}).get("served_entities", [])
    return (
        "; ".join(
            e["state"]["deployment_state_message"]
            for e in entities
            if e.get("state", {}).get("deployment") == "DEPLOYMENT_FAILED"
        )
        or endpoint["state"]["config_update"]
    )
