from __future__ import annotations

import json

import pytest

from threadsched.engine.user_code import UserCodeError, import_callable


def test_imports_a_dotted_attribute_path() -> None:
    assert import_callable("json:dumps") is json.dumps
    assert import_callable("json:JSONDecoder.decode") is json.JSONDecoder.decode


@pytest.mark.parametrize(
    ("reference", "match"),
    [
        ("json", r"'json': expected 'module:callable'"),
        (":dumps", r"expected 'module:callable'"),
        ("no_such_module_q:f", r"import of 'no_such_module_q' failed: ModuleNotFoundError"),
        ("json:nope", r"no attribute 'nope' in 'json'"),
        ("json:__doc__", r"'__doc__' is not callable \(got str\)"),
    ],
)
def test_unloadable_references_say_which_part_failed(reference: str, match: str) -> None:
    with pytest.raises(UserCodeError, match=match):
        import_callable(reference)
