import pytest

from slime_def.errors import SlimeDefError, SpecError
from slime_def.registry import Registry
from slime_def.specs import Spec, format_spec, parse_chain, parse_spec


def test_parse_bare_name():
    assert parse_spec("none") == Spec("none")


def test_parse_keywords_keep_order_and_types():
    spec = parse_spec("quantize(bits=4, ranges='per_dim', clip=True, scale=None)")
    assert spec.name == "quantize"
    assert spec.kwargs == (("bits", 4), ("ranges", "per_dim"), ("clip", True), ("scale", None))


def test_parse_negative_and_scientific_numbers():
    assert parse_spec("gaussian(sigma=-1e-3)").params == {"sigma": -0.001}


def test_chain_splits_on_top_level_pipes_only():
    parts = parse_chain("quantize(bits=4)|custom(label='a|b')|random_projection(dim=256)")
    assert [p.name for p in parts] == ["quantize", "custom", "random_projection"]
    assert parts[1].params == {"label": "a|b"}


def test_format_round_trip_is_canonical():
    text = "quantize( bits = 4 )|gaussian(sigma=0.05)"
    assert format_spec(parse_chain(text)) == "quantize(bits=4)|gaussian(sigma=0.05)"
    assert format_spec(parse_chain(format_spec(parse_chain(text)))) == format_spec(parse_chain(text))


@pytest.mark.parametrize(
    "text",
    [
        "",
        "   ",
        "gaussian(0.1)",
        "gaussian(sigma=0.1",
        "gaussian(sigma=__import__('os'))",
        "gaussian(sigma=x)",
        "gaussian(**{'sigma': 1})",
        "os.system('true')",
        "1gaussian",
        "a||b",
    ],
)
def test_invalid_specs_raise_spec_error(text):
    with pytest.raises(SpecError):
        parse_chain(text)


def test_spec_error_is_user_facing():
    assert issubclass(SpecError, SlimeDefError)


def test_registry_rejects_duplicate_names():
    registry = Registry("widget")
    registry.register("a", lambda: 1)
    with pytest.raises(SlimeDefError, match="already registered"):
        registry.register("a", lambda: 2)


def test_registry_unknown_name_lists_known_ones():
    registry = Registry("widget")
    registry.register("alpha", lambda: 1)
    registry.register("beta", lambda: 2)
    with pytest.raises(SpecError, match="Did you mean 'alpha'.*Known: alpha, beta"):
        registry.get("alpah")


def test_registry_create_rejects_unknown_parameter():
    registry = Registry("widget")
    registry.register("scale", lambda factor=1.0: factor)
    assert registry.create("scale(factor=2.5)") == 2.5
    with pytest.raises(SpecError, match="unknown parameter 'size'.*valid: factor"):
        registry.create("scale(size=2)")
