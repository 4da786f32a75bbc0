"""The torch engine inside the fatigue service's own analyzer, on the service's sample request."""

from __future__ import annotations

import json

from fatigue import samples

from vigil_fatigue.analyzer import FatigueAnalyzer
from vigil_fatigue.request import parse_request
from vigil_fatigue.settings import FatigueSettings


def test_analyzer_runs_on_the_torch_engine(torch_engine):
    settings = FatigueSettings()
    analyzer = FatigueAnalyzer(torch_engine, settings)
    reply = analyzer.analyze(parse_request(samples.valid_data(), settings))
    json.dumps(reply)
    assert reply["engine"] == torch_engine.name
    assert reply["face_count"] == 1 and reply["face_detected"] is True
    assert 0.2 < reply["ear"] < 0.45  # open eyes
    assert reply["eyes_closed"] is False
    assert reply["detection_score"] > 0.5
