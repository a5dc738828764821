from __future__ import annotations

import pytest

from polymodal.registry import Registry


def test_register_get_build_and_errors() -> None:
    reg: Registry[object] = Registry("widget")

    @reg.register("box")
    class Box:
        def __init__(self, width: int, *, depth: int = 1) -> None:
            self.width, self.depth = width, depth

    assert reg.names() == ["box"] and "box" in reg
    built = reg.build("box", user={"depth": 3}, width=2)
    assert (built.width, built.depth) == (2, 3)
    assert set(reg.options("box", frozenset({"width"}))) == {"depth"}
    with pytest.raises(ValueError, match="'colour'.*allowed: depth"):
        reg.build("box", user={"colour": 1}, width=2)
    with pytest.raises(KeyError, match="unknown widget 'ball'; registered: box"):
        reg.get("ball")
    with pytest.raises(ValueError, match="twice"):
        reg.register("box")(Box)
