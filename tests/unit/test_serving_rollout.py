"""How a rollout step is judged, from the new version's metrics during the step (no server)."""

import pytest

from lib.serving import metrics, rollout
from lib.serving.settings import Rollout

# conf/environments.yml's defaults: 1% 5xx, p99 <= 1000 ms, judged from 50 requests on.
LIMITS = Rollout(steps=(50, 100), step_seconds=60, max_error_rate=0.01, max_p99_ms=1000, min_requests=50)
FAST, SLOW, TOO_SLOW = 0.004, 0.9, 1.5  # seconds: buckets 5 ms, 1000 ms, 2500 ms


def seen_in_step(during: list[tuple[int, float]], before: list[tuple[int, float]]) -> metrics.Snapshot:
    """The new version's requests during a step, read back as the rollout reads them: the
    endpoint's metrics text after the step minus the text before it."""
    registry = metrics.Registry()
    for status, seconds in before:
        registry.entities["new"].observe(status, seconds)
    start = metrics.parse(registry.render("ep")).get("new", metrics.Snapshot())
    for status, seconds in during:
        registry.entities["new"].observe(status, seconds)
    return metrics.parse(registry.render("ep")).get("new", metrics.Snapshot()).since(start)


@pytest.mark.parametrize(
    "during,before,expected",
    [
        pytest.param(
            [(200, FAST)] * 100,
            [(200, FAST)] * 30,
            rollout.Step(50, 100, 0, 5.0, "ok"),
            id="ok: within the limits, earlier requests not counted",
        ),
        pytest.param([(200, FAST)] * 50, [], rollout.Step(50, 50, 0, 5.0, "ok"), id="ok: exactly min_requests is judged"),
        pytest.param(
            [(500, FAST)] + [(200, SLOW)] * 99, [], rollout.Step(50, 100, 1, 1000.0, "ok"), id="ok: at both limits, not over them"
        ),
        pytest.param(
            [(400, FAST)] * 10 + [(200, FAST)] * 90,
            [],
            rollout.Step(50, 100, 0, 5.0, "ok"),
            id="ok: the caller's 4xx are not the version's errors",
        ),
        pytest.param(
            [(500, TOO_SLOW)] * 49,
            [(200, FAST)] * 100,
            rollout.Step(50, 49, 49, 2500.0, "not judged"),
            id="not judged: one request short, however bad",
        ),
        pytest.param(
            [], [(200, FAST)] * 100, rollout.Step(50, 0, 0, 0.0, "not judged"), id="not judged: no requests in the step"
        ),
        pytest.param([(500, FAST)] * 2 + [(200, FAST)] * 98, [], rollout.Step(50, 100, 2, 5.0, "failed"), id="failed: 2% 5xx"),
        pytest.param(
            [(200, TOO_SLOW)] * 2 + [(200, FAST)] * 98,
            [],
            rollout.Step(50, 100, 0, 2500.0, "failed"),
            id="failed: p99 over 1000 ms",
        ),
    ],
)
def test_a_step_is_judged_on_the_new_versions_requests_during_it(during, before, expected):
    assert rollout.judge(50, seen_in_step(during, before), LIMITS) == expected
