"""The key bundle (infra/auth/bundle.py): exactly the shared keys, written 0600, an
import idempotent for identical keys and refused for differing ones unless forced, and
no seed in any message."""

from __future__ import annotations

import orjson
import pytest

from infra.auth.bundle import (
    FORMAT,
    SHARED_NAMES,
    BadBundle,
    KeysDiffer,
    KeysMissing,
    export_bundle,
    import_bundle,
    missing_keys,
)
from infra.auth.credentials import Keys, read_secret


@pytest.fixture
def first(tmp_path) -> Keys:
    keys = Keys.of(tmp_path / "a")
    keys.ensure()
    return keys


def seeds_of(keys: Keys) -> dict[str, str]:
    return {name: read_secret(keys.directory / name) for name in SHARED_NAMES}


def test_the_bundle_holds_exactly_the_shared_keys(first):
    (first.directory / "read.token").write_text("ot1.secret\n")
    bundle = orjson.loads(export_bundle(first))
    assert bundle == {"format": FORMAT, "keys": seeds_of(first)}
    assert set(SHARED_NAMES) == {"issuer.nk", "orchestrator.nk", "operator.nk"}


def test_an_import_writes_them_private_and_again_changes_nothing(first, tmp_path):
    second = Keys.of(tmp_path / "b")
    done = import_bundle(second, export_bundle(first))
    assert done.written == list(SHARED_NAMES) and not done.unchanged
    assert seeds_of(second) == seeds_of(first)
    assert second.directory.stat().st_mode & 0o777 == 0o700
    for name in SHARED_NAMES:
        assert (second.directory / name).stat().st_mode & 0o777 == 0o600
    again = import_bundle(second, export_bundle(first))
    assert again.unchanged == list(SHARED_NAMES) and not again.written


def test_differing_keys_are_refused_whole_unless_forced(first, tmp_path):
    second = Keys.of(tmp_path / "b")
    second.ensure()  # a deployment of its own
    (second.directory / "issuer.nk").unlink()
    theirs = seeds_of(first)
    with pytest.raises(KeysDiffer) as refused:
        import_bundle(second, export_bundle(first))
    assert refused.value.differing == ["orchestrator.nk", "operator.nk"]
    assert not second.issuer.exists()  # nothing written, not even the missing one
    assert not any(seed in str(refused.value) for seed in theirs.values())
    done = import_bundle(second, export_bundle(first), force=True)
    assert done.written == ["issuer.nk"]
    assert done.replaced == ["orchestrator.nk", "operator.nk"]
    assert seeds_of(second) == theirs
    assert (second.directory / "operator.nk").stat().st_mode & 0o777 == 0o600
    assert sorted(p.name for p in second.directory.iterdir()) == sorted(SHARED_NAMES)


def test_export_of_an_incomplete_directory_names_what_is_missing(first):
    first.operator.unlink()
    assert missing_keys(first) == ["operator.nk"]
    with pytest.raises(KeysMissing) as missing:
        export_bundle(first)
    assert missing.value.missing == ["operator.nk"]


@pytest.mark.parametrize("change", ["not json", "format", "extra key", "wrong kind", "junk"])
def test_a_bad_bundle_is_refused_without_quoting_it(first, tmp_path, change):
    bundle = orjson.loads(export_bundle(first))
    seeds = dict(bundle["keys"])
    if change == "format":
        bundle["format"] = "other/1"
    elif change == "extra key":
        bundle["keys"]["read.token"] = "ot1.x"
    elif change == "wrong kind":  # a user seed where the account seed belongs
        bundle["keys"]["issuer.nk"] = seeds["operator.nk"]
    elif change == "junk":
        bundle["keys"]["operator.nk"] = "SU" + "A" * 30
    text = "not json " + seeds["issuer.nk"] if change == "not json" else \
        orjson.dumps(bundle).decode()
    second = Keys.of(tmp_path / "b")
    with pytest.raises(BadBundle) as refused:
        import_bundle(second, text)
    assert not any(seed in str(refused.value) for seed in seeds.values())
    assert missing_keys(second) == list(SHARED_NAMES)
