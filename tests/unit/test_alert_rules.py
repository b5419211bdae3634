"""deploy/prometheus: promtool accepts the rules and their unit tests pass; every alert
has a test that makes it fire, a summary, and a runbook in docs/observability.md.

promtool comes from Debian's `prometheus` package, which `make test` installs (`make
promtool`). Without it these tests fail: rules nobody checked are not shipped.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]
RULES_DIR = ROOT / "deploy" / "prometheus"
RULES = RULES_DIR / "orchestrator.rules.yml"
RULE_TESTS = RULES_DIR / "orchestrator.rules.test.yml"
DOC = ROOT / "docs" / "observability.md"


def promtool() -> str:
    found = shutil.which("promtool")
    assert found, ("promtool is missing: `make promtool` installs it (apt-get install "
                   "prometheus); make test does so first")
    return found


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([promtool(), *args], capture_output=True, text=True, timeout=120,
                          cwd=RULES_DIR)


def load(path: Path) -> Any:
    return yaml.safe_load(path.read_text(encoding="utf-8"))


def alerts() -> list[dict[str, Any]]:
    return [rule for group in load(RULES)["groups"] for rule in group["rules"]
            if "alert" in rule]


def test_promtool_checks_the_rules() -> None:
    checked = run("check", "rules", RULES.name)
    assert checked.returncode == 0, checked.stdout + checked.stderr


def test_promtool_unit_tests_of_the_rules_pass() -> None:
    tested = run("test", "rules", RULE_TESTS.name)
    assert tested.returncode == 0, tested.stdout + tested.stderr
    assert "SUCCESS" in tested.stdout


def test_every_alert_is_shown_firing_and_quiet() -> None:
    fired: set[str] = set()
    quiet: set[str] = set()
    for case in load(RULE_TESTS)["tests"]:
        for check in case.get("alert_rule_test", []):
            (fired if check.get("exp_alerts") else quiet).add(check["alertname"])
    names = {rule["alert"] for rule in alerts()}
    assert len(names) >= 7
    assert names - fired == set(), "alerts no test makes fire"
    assert names - quiet == set(), "alerts no test shows quiet"


def test_every_alert_has_a_summary_severity_and_runbook() -> None:
    doc = DOC.read_text(encoding="utf-8")
    headings = {h.strip() for h in re.findall(r"^#+ (.+)$", doc, flags=re.M)}
    for rule in alerts():
        name = rule["alert"]
        assert rule["labels"]["severity"] in ("page", "ticket"), name
        assert rule["annotations"]["summary"], name
        runbook = rule["annotations"]["runbook"]
        assert runbook == f"docs/observability.md#{name.lower()}", name
        assert name in headings, f"docs/observability.md has no runbook for {name}"


def test_every_metric_the_rules_read_is_documented() -> None:
    doc = DOC.read_text(encoding="utf-8")
    text = RULES.read_text(encoding="utf-8")
    used = set(re.findall(r"(?<![:\w])(orch_[a-z_]+?)(?:_bucket|_count|_sum)?\b", text))
    used = {m for m in used if not m.endswith(":")}
    assert used
    for metric in used:
        described = re.search(rf"^- `{metric}[`{{]", doc, flags=re.M)
        assert described, f"docs/observability.md does not describe {metric}"


def test_the_example_prometheus_config_loads_the_rules(tmp_path: Path) -> None:
    for name in ("prometheus.example.yml", RULES.name):
        (tmp_path / name).write_text((RULES_DIR / name).read_text(encoding="utf-8"))
    (tmp_path / "read.token").write_text("a-read-token\n")
    checked = subprocess.run([promtool(), "check", "config", "prometheus.example.yml"],
                             capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "SUCCESS" in checked.stdout + checked.stderr
