"""Settings: a wrong value stops start-up with a message naming the GUARD_ variable."""

from __future__ import annotations

from pathlib import Path

import pytest

from guard import create_app
from guard.config import load_settings
from guard.errors import ConfigError


@pytest.mark.parametrize(("var", "value"), [
    ("GUARD_MAX_BODY_BYTES", "ten"),
    ("GUARD_PROCESSOR", "paypal"),
    ("GUARD_DATABASE_URL", "mysql://x"),
    ("GUARD_KEY_CACHE_SECONDS", "30"),
    ("GUARD_LOG_LEVEL", "LOUD"),
])
def test_bad_setting_names_the_variable(monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                                        var: str, value: str) -> None:
    monkeypatch.setenv("GUARD_INSTANCE_DIR", str(tmp_path))
    monkeypatch.setenv(var, value)
    with pytest.raises(ConfigError) as err:
        create_app()
    assert var in str(err.value)


def test_unknown_guard_variable_is_refused(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("GUARD_INSTANCE_DIR", str(tmp_path))
    monkeypatch.setenv("GUARD_DATABSE_URL", "sqlite://")  # typo must not pass silently
    with pytest.raises(ConfigError, match="GUARD_DATABSE_URL"):
        load_settings()


def test_defaults_derive_from_instance_dir(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("GUARD_INSTANCE_DIR", str(tmp_path))
    s = load_settings()
    assert s.database_url == f"sqlite:///{(tmp_path / 'guard.db').resolve()}"
    assert s.keyring_file == tmp_path / "guard.keyring"


def test_keyring_created_owner_only(tmp_path: Path) -> None:
    from guard.keyring import Keyring

    kr = Keyring(tmp_path / "k" / "guard.keyring")
    assert (kr.path.stat().st_mode & 0o777) == 0o600
    v1 = kr.current("api_key_pepper")
    assert Keyring(kr.path).current("api_key_pepper") == v1
    kr.path.chmod(0o644)
    with pytest.raises(ConfigError, match="GUARD_KEYRING_PATH"):
        Keyring(kr.path)
