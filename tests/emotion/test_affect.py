"""Valence/arousal as the probability-weighted circumplex coordinates."""

from __future__ import annotations

import numpy as np
import pytest

from vigil_emotion.affect import CIRCUMPLEX_COORDINATES, AffectMapper, canonical_label
from vigil_emotion.mini_xception import FER2013_LABELS


def one_hot(label):
    return np.array([1.0 if name == label else 0.0 for name in FER2013_LABELS])


@pytest.mark.parametrize("label", FER2013_LABELS)
def test_a_certain_class_sits_at_its_coordinates(label):
    assert AffectMapper(FER2013_LABELS).estimate(one_hot(label)) == pytest.approx(CIRCUMPLEX_COORDINATES[label])


def test_signs_are_the_psychology_not_arbitrary():
    mapper = AffectMapper(FER2013_LABELS)
    happy_v, happy_a = mapper.estimate(one_hot("happy"))
    sad_v, sad_a = mapper.estimate(one_hot("sad"))
    angry_v, angry_a = mapper.estimate(one_hot("angry"))
    assert happy_v > 0 > sad_v and angry_v < 0
    assert angry_a > 0 > sad_a


def test_mixture_is_the_expectation():
    mapper = AffectMapper(FER2013_LABELS)
    mix = 0.5 * one_hot("happy") + 0.5 * one_hot("sad")
    v, a = mapper.estimate(mix)
    assert v == pytest.approx((0.81 - 0.63) / 2) and a == pytest.approx((0.51 - 0.27) / 2)


def test_aliases_and_unknown_labels():
    assert canonical_label(" Happiness ") == "happy" and canonical_label("ANGER") == "angry"
    assert canonical_label("contempt") is None
    mapper = AffectMapper(["happy", "contempt"])
    assert not mapper.supported and mapper.estimate(np.array([0.5, 0.5])) is None
