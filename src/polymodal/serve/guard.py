"""Replies that cannot go wrong: text that always encodes, results that are always finite numbers."""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any, TypeVar

from polymodal.serve.inputs import Problem, RequestError

T = TypeVar("T", str, None)


def safe_text(text: T) -> T:
    """`text` with lone surrogates (which UTF-8 cannot encode, e.g. from a JSON key "\\udc80") escaped."""
    return text if text is None else text.encode("utf-8", "backslashreplace").decode("utf-8")


def _numbers(value: Any) -> Iterator[float]:
    if isinstance(value, float):
        yield value
    elif isinstance(value, dict):
        for v in value.values():
            yield from _numbers(v)
    elif isinstance(value, list):
        for v in value:
            yield from _numbers(v)


def finite_results(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The results of one request if every number in them is finite; else RequestError(422) naming the records."""
    bad = [i for i, record in enumerate(records) if not all(map(math.isfinite, _numbers(record)))]
    if bad:
        raise RequestError(422, [Problem(i, None, "the model's output for this record is not finite (NaN or inf); "
                                                  "its inputs are far outside what the model was trained on")
                                 for i in bad])
    return records
