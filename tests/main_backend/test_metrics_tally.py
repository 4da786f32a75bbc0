"""Tallied metrics (vigil_main_backend.metrics): per-request figures kept as plain numbers and
flushed into prometheus_client give exactly what observing them directly gives."""

from __future__ import annotations

import math

import pytest
from prometheus_client import CollectorRegistry, Histogram, generate_latest

from shared_protocol import Reply
from vigil_main_backend.metrics import HistogramTally, MainBackendMetrics

BUCKETS = (0.001, 0.01, 0.1, 1.0)
# On a bound, between bounds, below the first, above the last, zero, negative.
FINITE = [0.001, 0.01, 0.1, 1.0, 0.0005, 0.05, 0.5, 7.0, 0.0, -1.0, 0.0099, 1.0000001]


def exposition(values: list[float], observe_with_tally: bool) -> str:
    registry = CollectorRegistry()
    histogram = Histogram("h", "test", ["backend"], buckets=BUCKETS, registry=registry)
    child = histogram.labels("b")
    tally = HistogramTally(child, BUCKETS)
    for value in values:
        (tally.observe if observe_with_tally else child.observe)(value)
    tally.flush()
    tally.flush()  # a second flush adds nothing
    lines = generate_latest(registry).decode().splitlines()
    return "\n".join(line for line in lines if "_created" not in line)  # when it was made differs


@pytest.mark.parametrize("values", [FINITE, [*FINITE, math.inf], [*FINITE, math.nan]], ids=["finite", "inf", "nan"])
def test_a_flushed_tally_exposes_what_direct_observations_expose(values):
    assert exposition(values, observe_with_tally=True) == exposition(values, observe_with_tally=False)


def test_replies_and_messages_reach_the_exposition_at_the_scrape_and_only_once():
    metrics = MainBackendMetrics()
    ok = Reply(True, latency_s=0.002, timing={"queue_ms": 0.1, "compute_ms": 3.0, "batch_size": 2})
    failed = Reply.failure("timeout", "slow", latency_s=5.0)
    for _ in range(3):
        metrics.count_client_message("inference_request")
        metrics.observe_reply("eeg", ok)
    metrics.observe_reply("eeg", failed)
    metrics.refresh({})
    metrics.refresh({})  # a second scrape: nothing new, nothing counted twice
    text = metrics.render()[1].decode()
    assert 'vigil_client_messages_total{type="inference_request"} 3.0' in text
    assert 'vigil_backend_requests_total{backend="eeg"} 4.0' in text
    assert 'vigil_backend_errors_total{backend="eeg",code="timeout"} 1.0' in text
    assert 'vigil_backend_latency_seconds_bucket{backend="eeg",le="0.0025"} 3.0' in text
    assert 'vigil_backend_latency_seconds_count{backend="eeg"} 4.0' in text
    assert 'vigil_backend_compute_seconds_count{backend="eeg"} 3.0' in text
    assert 'vigil_backend_batch_size_bucket{backend="eeg",le="2.0"} 3.0' in text
    metrics.observe_reply("eeg", ok)
    metrics.flush()
    assert 'vigil_backend_requests_total{backend="eeg"} 5.0' in metrics.render()[1].decode()
