"""A served entity: one registered model version, loaded, warmed and scoring in batches.

Requests are checked one by one (payload.check) and then wait in the entity's queue; a
single scoring thread takes everything that queued while it was busy (up to max_batch_rows)
and scores it as one frame. Nothing waits for a batch to fill: alone, a request is scored at
once; under load, batches form by themselves. If a batch fails, each request is scored
alone, so one bad request cannot fail the others.
"""

from __future__ import annotations

import asyncio
import threading
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import numpy as np
import pandas as pd

from lib.core import payload
from lib.core.errors import ApiError
from lib.features.store import FeatureLookup
from lib.serving.contract import ServedEntity
from lib.serving.online_store import MISSES, OnlineStore

if TYPE_CHECKING:
    from mlflow.pyfunc import PyFuncModel  # imported in load(), off the import path of the server

RETIRE_AFTER_S = 30.0  # a replaced entity keeps its thread this long for requests already routed to it


class ModelFailed(Exception):
    """The model raised while scoring a request that passed the input checks."""


@dataclass(frozen=True)
class Scored:
    """A request's predictions, and how many of its rows had a feature lookup that found no
    row for their keys (scored from null features, as Databricks scores them)."""

    predictions: np.ndarray
    lookup_misses: int = 0


class Batcher:
    """Dynamic batching on the event loop, scoring on one worker thread."""

    def __init__(self, run: Callable[[list], list], max_rows: int, name: str):
        self._run, self._max_rows = run, max_rows
        self._pending: deque = deque()
        self._busy = False
        self._executor = ThreadPoolExecutor(1, thread_name_prefix=f"score-{name}")
        self.batches = 0

    async def submit(self, item: Any, rows: int) -> Any:
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        self._pending.append((item, rows, future))
        if not self._busy:
            self._busy = True
            loop.create_task(self._drain())
        return await future

    async def _drain(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            while self._pending:
                batch: list[tuple[Any, int, asyncio.Future]] = []
                rows = 0
                while self._pending and (not batch or rows + self._pending[0][1] <= self._max_rows):
                    entry = self._pending.popleft()
                    batch.append(entry)
                    rows += entry[1]
                self.batches += 1
                try:
                    results = await loop.run_in_executor(self._executor, self._run, [e[0] for e in batch])
                except Exception as exc:  # the runner isolates per item; this is a last resort
                    results = [exc] * len(batch)
                for (_, _, future), result in zip(batch, results):
                    if future.done():
                        continue
                    if isinstance(result, BaseException):
                        future.set_exception(result)
                    else:
                        future.set_result(result)
        finally:
            self._busy = False

    def close(self) -> None:
        self._executor.shutdown(wait=False)


class Served:
    """One served entity of an endpoint. `load` runs on a loader thread, off the request path."""

    def __init__(self, spec: ServedEntity, store_path: Path | None, max_batch_rows: int):
        self.spec = spec
        self.store_path = store_path
        self.max_batch_rows = max_batch_rows
        self.inputs: payload.InputSpec | None = None
        self._model: PyFuncModel | None = None
        self._lookups: list[FeatureLookup] = []
        self._store: OnlineStore | None = None
        self._batcher: Batcher | None = None

    def load(self) -> None:
        """Download and load the version, open its online features, score its input example."""
        import mlflow
        from mlflow.models import Model

        local = mlflow.artifacts.download_artifacts(artifact_uri=self.spec.uri)
        meta = Model.load(local)
        if meta.signature is None or not meta.signature.inputs.has_input_names():
            raise ApiError(400, "INVALID_PARAMETER_VALUE", f"{self.spec.uri} has no column signature to serve")
        self.inputs = payload.InputSpec.from_model(meta)
        self._lookups = [FeatureLookup.from_dict(d) for d in (meta.metadata or {}).get("feature_lookups") or []]
        if self._lookups:
            if self.store_path is None:
                raise ApiError(400, "INVALID_PARAMETER_VALUE", f"{self.spec.uri} looks features up, and no online store is set")
            self._store = OnlineStore(self.store_path)
            self._store.check(self._lookups)
        self._model = mlflow.pyfunc.load_model(local)
        # mlflow annotates load_input_example as `str | None`; it returns the logged example, a frame for our models
        example = cast("pd.DataFrame | None", meta.load_input_example(local))
        if example is not None:  # warm up: the whole path once, before any traffic comes
            parsed = payload.Parsed({c: example[c].tolist() for c in example.columns}, len(example), None)
            result = self.predict([self.check(parsed)])[0]
            if isinstance(result, BaseException):
                raise result

    def check(self, parsed: payload.Parsed) -> tuple[dict[str, np.ndarray], bool, int]:
        assert self.inputs is not None, "an entity is routed requests (and warmed up) once load() has read its inputs"
        columns, lookup = payload.check(parsed, self.inputs)
        return columns, lookup, parsed.rows

    async def score(self, item: tuple[dict[str, np.ndarray], bool, int]) -> Scored:
        if self._batcher is None:
            self._batcher = Batcher(self.predict, self.max_batch_rows, self.spec.name)
        return await self._batcher.submit(item, item[2])

    @property
    def batches(self) -> int:
        return self._batcher.batches if self._batcher else 0

    def _features(self, item: tuple[dict[str, np.ndarray], bool, int]) -> tuple[pd.DataFrame, int]:
        """The model's input frame of a request, and its rows whose lookups missed."""
        assert self.inputs is not None, "called once load() has read the inputs"
        columns, lookup, _ = item
        if not lookup:
            return payload.frame([columns], list(self.inputs.columns)), 0
        # payload.check asks for a lookup only when the inputs have keys: the model has lookups, and load() opened the store
        assert self._store is not None
        given = pd.DataFrame(columns)
        found = self._store.lookup(given, self._lookups)
        missed = int((found.pop(MISSES) > 0).sum())
        for name in given.columns:  # features sent with the keys win over looked-up ones
            found[name] = given[name]
        for name in self.inputs.columns:
            if self.inputs.types.get(name) in ("double", "float"):
                found[name] = pd.to_numeric(found[name], errors="coerce").astype("float64")
        return found[list(self.inputs.columns)], missed

    def predict(self, items: list) -> list:
        """A Scored for each item, or the exception that item raised (never raises itself)."""
        assert self.inputs is not None and self._model is not None, "called once load() has loaded the model"
        try:
            if all(not lookup for _, lookup, _ in items):
                frame = payload.frame([cols for cols, _, _ in items], list(self.inputs.columns))
                missed = [0] * len(items)
            else:
                parts = [self._features(item) for item in items]
                frame, missed = pd.concat([f for f, _ in parts], ignore_index=True), [m for _, m in parts]
            scores: np.ndarray = np.asarray(self._model.predict(frame))
            bounds = np.cumsum([0] + [rows for _, _, rows in items])
            return [Scored(scores[bounds[i] : bounds[i + 1]], missed[i]) for i in range(len(items))]
        except Exception as exc:
            if len(items) == 1:
                return [
                    ModelFailed(
                        f"{self.spec.name} failed to score: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}"
                    )
                ]
        return [self.predict([item])[0] for item in items]

    def retire(self) -> None:
        """Stop this entity's scoring thread once requests already routed to it are done."""
        if self._batcher is not None:
            timer = threading.Timer(RETIRE_AFTER_S, self._batcher.close)
            timer.daemon = True
            timer.start()
