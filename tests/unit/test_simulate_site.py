"""`riskwatch simulate --scenario NAME` plays on the scenario's own sample site unless `--site` names another."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from api.cli import app
from api.run.simulate import site_for
from simulators.run import default_site_path, load_site, site_models
from simulators.scenarios import SCENARIOS, ScenarioError, get_scenario

FULL = next(name for name, sc in SCENARIOS.items() if sc.site != default_site_path().name)


def test_a_scenario_on_another_site_defaults_to_it() -> None:
    sc = get_scenario(FULL)
    assert site_for(None, sc) == sc.site_path != default_site_path()
    assert sc.site_path.exists()


def test_an_explicit_site_wins_and_no_scenario_means_the_county_site(tmp_path: Path) -> None:
    mine = tmp_path / "mine.yaml"
    assert site_for(mine, get_scenario(FULL)) == mine
    assert site_for(None, None) == default_site_path()


def test_the_default_site_has_what_the_scenario_names_and_the_county_site_does_not() -> None:
    sc = get_scenario(FULL)
    sc.check(site_models(load_site(site_for(None, sc))))  # binds: every fault's gateway and tag exist
    with pytest.raises(ScenarioError):  # the old default (the county site) lacks them
        sc.check(site_models(load_site(default_site_path())))


def test_the_cli_refuses_an_unknown_scenario_before_touching_any_service(tmp_path: Path) -> None:
    env = {"RISKWATCH_DATA_DIR": str(tmp_path), "RISKWATCH_DB_URL": "postgresql://nobody@127.0.0.1:1/x",
           "RISKWATCH_MQTT_URL": "mqtt://u:p@127.0.0.1:1"}
    with pytest.raises(ScenarioError):
        CliRunner().invoke(app, ["simulate", "--scenario", "no_such_incident"], env=env, catch_exceptions=False)
