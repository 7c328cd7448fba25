"""Policy files: every shipped file loads; bad files stop start-up naming file and field."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import yaml

from guard import create_app
from guard.config import DEFAULT_POLICIES_DIR, Settings
from guard.errors import ConfigError, ValidationFailed
from guard.policy import POLICY_MODELS, apply_overrides, load_policy_dir


def test_every_shipped_policy_file_loads() -> None:
    files = sorted(p.stem for p in DEFAULT_POLICIES_DIR.glob("*.y*ml"))
    assert files == sorted(POLICY_MODELS)
    pset = load_policy_dir(DEFAULT_POLICIES_DIR)
    assert len(pset.version) == 32
    for name in POLICY_MODELS:
        assert pset.get(name).model_config.get("frozen") is True


def test_version_is_a_content_hash(tmp_path: Path) -> None:
    shutil.copytree(DEFAULT_POLICIES_DIR, tmp_path / "p")
    a = load_policy_dir(tmp_path / "p")
    # Comments and key order do not change the content, so they do not change the version.
    audit = yaml.safe_load((tmp_path / "p" / "audit.yaml").read_text())
    (tmp_path / "p" / "audit.yaml").write_text(yaml.safe_dump(dict(reversed(audit.items()))))
    assert load_policy_dir(tmp_path / "p").version == a.version
    audit["retention_days"] += 1
    (tmp_path / "p" / "audit.yaml").write_text(yaml.safe_dump(audit))
    assert load_policy_dir(tmp_path / "p").version != a.version


def _broken(tmp_path: Path, name: str, content: str) -> Path:
    d = tmp_path / "policies"
    shutil.copytree(DEFAULT_POLICIES_DIR, d)
    (d / f"{name}.yaml").write_text(content)
    return d


@pytest.mark.parametrize(("name", "content", "expect"), [
    ("audit", "retention_days: 30\nonline_days: 10\npage_max: 100\n", "audit.yaml: retention_days"),
    ("audit", "retention_days: 400\nonline_days: 120\npage_max: 100\nsurprise: 1\n",
     "audit.yaml: surprise"),
    ("audit", "retention_days: [1\n", "audit.yaml: not valid YAML"),
    ("roles", "roles:\n  agent:\n    description: x\n    permissions: [tenant.read]\n",
     "roles.yaml: (top level): Value error, roles missing"),
    ("unknown_rules", "a: 1\n", "unknown_rules.yaml: no policy model"),
])
def test_bad_policy_file_stops_startup(tmp_path: Path, name: str, content: str, expect: str) -> None:
    d = _broken(tmp_path, name, content)
    settings = Settings(instance_dir=tmp_path / "i", policies_dir=d)
    with pytest.raises(ConfigError) as err:
        create_app(settings)
    assert expect in str(err.value)


def test_ai_agent_can_never_approve(tmp_path: Path) -> None:
    d = tmp_path / "policies"
    shutil.copytree(DEFAULT_POLICIES_DIR, d)
    roles = yaml.safe_load((d / "roles.yaml").read_text())
    roles["roles"]["ai_agent"]["permissions"].append("refunds.approve")
    (d / "roles.yaml").write_text(yaml.safe_dump(roles))
    with pytest.raises(ConfigError, match="ai_agent: may never hold refunds.approve"):
        load_policy_dir(d)


def test_missing_policy_file(tmp_path: Path) -> None:
    d = tmp_path / "policies"
    shutil.copytree(DEFAULT_POLICIES_DIR, d)
    (d / "audit.yaml").unlink()
    with pytest.raises(ConfigError, match="audit.yaml: missing policy file"):
        load_policy_dir(d)


def test_tenant_overrides_stay_within_bounds() -> None:
    base = load_policy_dir(DEFAULT_POLICIES_DIR)
    longer = apply_overrides(base, {"audit": {"retention_days": 3650}})
    assert longer.audit.retention_days == 3650 and longer.version != base.version
    with pytest.raises(ValidationFailed) as err:
        apply_overrides(base, {"audit": {"retention_days": 100}})
    assert err.value.errors[0]["loc"][:3] == ["body", "audit", "retention_days"]
    with pytest.raises(ValidationFailed, match="tenants may not override"):
        apply_overrides(base, {"roles": {"roles": {}}})
