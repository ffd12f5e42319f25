"""PanoramaSettings: every rule on a value is checked once, naming the field (property-based)."""

import dataclasses
import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from syncguide.errors import SettingError
from syncguide.settings import PanoramaSettings, option_name

NUMERIC = [f for f in dataclasses.fields(PanoramaSettings) if f.metadata["low"] is not None]


@pytest.mark.parametrize("item", NUMERIC, ids=lambda f: f.name)
@settings(max_examples=25, deadline=None)
@given(value=st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.integers(-(10**6), 10**6)))
def test_numeric_settings_accept_exactly_the_values_their_rule_allows(item, value) -> None:
    integer = "int" in str(item.type)
    low = item.metadata["low"]
    high = item.metadata["high"] if item.metadata["high"] is not None else math.inf
    valid = math.isfinite(value) and low <= value <= high and (not integer or isinstance(value, int))
    if valid:
        assert getattr(PanoramaSettings(**{item.name: value}), item.name) == value
    else:
        with pytest.raises(SettingError) as error:
            PanoramaSettings(**{item.name: value})
        assert error.value.setting == item.name and str(error.value).startswith(item.name)


@pytest.mark.parametrize("value", ["yes", 1, None])
def test_flags_must_be_booleans(value) -> None:
    with pytest.raises(SettingError, match="circular_padding must be True or False"):
        PanoramaSettings(circular_padding=value)


def test_png_parameters_use_the_option_names() -> None:
    stored = PanoramaSettings(num_inference_steps=7, guidance_scale=3.0).to_parameters()
    assert stored["steps"] == 7 and stored["cfg"] == 3.0 and "circular" in stored and "bootstrap" not in stored
    assert "bootstrap" in PanoramaSettings().to_parameters(layout=True)
    assert [option_name(n) for n in ("num_inference_steps", "sync_weight")] == ["--steps", "--sync-weight"]


def test_build_replaces_fields_and_refuses_unknown_names() -> None:
    base = PanoramaSettings(stride=8)
    built = PanoramaSettings.build(base, sync_weight=5.0)
    assert built.stride == 8 and built.sync_weight == 5.0 and base.sync_weight == 20.0
    with pytest.raises(TypeError, match="'strides'"):
        PanoramaSettings.build(strides=4)
