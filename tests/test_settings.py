"""flarelens.settings: outputs made with other settings are refused, in one line."""

from __future__ import annotations

import json

import pytest

from flarelens.errors import FlareLensError
from flarelens.settings import SettingsMismatch, check_same_settings, differing_keys, read_settings


def test_first_run_records_the_settings_and_the_same_settings_pass(tmp_path):
    path = tmp_path / "settings.json"
    current = {"seed": 0, "size": 128, "catalog": "bundled"}
    check_same_settings(path, current, "images")
    assert json.loads(path.read_text()) == current
    before = path.stat().st_mtime_ns
    check_same_settings(path, dict(reversed(list(current.items()))), "images")  # key order does not matter
    assert path.stat().st_mtime_ns == before


def test_other_settings_are_refused_naming_each_difference(tmp_path):
    path = tmp_path / "settings.json"
    check_same_settings(path, {"seed": 0, "size": 128}, "images simulated")
    with pytest.raises(SettingsMismatch) as err:
        check_same_settings(path, {"seed": 1, "size": 128, "extra": True}, "images simulated", hint="use another --out")
    message = str(err.value)
    assert err.value.keys == ["extra", "seed"]
    assert "seed 0 there, 1 now" in message and "extra" in message and "size" not in message
    assert message.endswith("use another --out") and "\n" not in message
    assert isinstance(err.value, FlareLensError)
    assert json.loads(path.read_text()) == {"seed": 0, "size": 128}  # the record is kept


def test_nothing_is_written_when_asked_not_to(tmp_path):
    path = tmp_path / "settings.json"
    check_same_settings(path, {"a": 1}, write=False)
    assert not path.exists()


@pytest.mark.parametrize("text", ["{not json", "[1, 2]", "\udcff"])
def test_a_damaged_settings_file_is_one_line(tmp_path, text):
    path = tmp_path / "settings.json"
    path.write_bytes(text.encode("utf-8", "surrogateescape"))
    with pytest.raises(FlareLensError, match="damaged settings file") as err:
        check_same_settings(path, {"a": 1}, "maps", hint="use --overwrite")
    assert not isinstance(err.value, SettingsMismatch)
    assert str(path) in str(err.value) and str(err.value).endswith("use --overwrite")
    assert read_settings(tmp_path / "absent.json") is None


def test_differing_keys_counts_a_missing_key_and_a_null_apart():
    assert differing_keys({"a": None}, {}) == ["a"]
    assert differing_keys({"a": 1, "b": [1, 2]}, {"a": 1, "b": [1, 2]}) == []
