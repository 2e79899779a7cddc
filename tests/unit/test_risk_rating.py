"""The enterprise risk rating (issue 13): the shipped model file, the pure evaluator at every level and
threshold edge, and the load-time validation of a bad model file (file, line and field named)."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest
import yaml

from core.errors import SourceError
from hazards.risk.evaluate import Inputs, rate, shown
from hazards.risk.model import DEFAULT_PATH, INPUTS, LEVEL_ORDER, RatingLevel, RatingModel, load_model

SHIPPED = DEFAULT_PATH.read_text(encoding="utf-8")


@pytest.fixture(scope="module")
def model() -> RatingModel:
    return load_model()


def level_of(model: RatingModel, **kw: float | None) -> RatingLevel:
    return rate(Inputs(**kw), model).level  # type: ignore[arg-type]


def texts(model: RatingModel, **kw: float | None) -> list[str]:
    return [r.text for r in rate(Inputs(**kw), model).reasons]  # type: ignore[arg-type]


# --- the shipped file -------------------------------------------------------------------------------


def test_shipped_model_loads_with_four_levels_in_order(model: RatingModel) -> None:
    assert model.version and model.availability_window_hours == 24
    assert [s.level for s in model.levels] == list(LEVEL_ORDER)
    assert [s.name for s in model.levels] == ["重大风险", "较大风险", "一般风险", "低风险"]
    tested = {c.input for s in model.levels for c in s.conditions}
    assert tested == set(INPUTS)  # every input the store gathers is used by some condition


def test_every_input_is_a_field_of_inputs() -> None:
    assert set(INPUTS) == set(Inputs().as_dict())


# --- levels and their edges -------------------------------------------------------------------------


def test_nothing_wrong_is_blue_with_no_reason(model: RatingModel) -> None:
    r = rate(Inputs(availability_pct=100.0), model)
    assert (r.level, r.name, r.reasons, r.version) == (RatingLevel.BLUE, "低风险", (), model.version)
    assert r.colour_zh == "蓝"


def test_unknown_availability_fires_nothing(model: RatingModel) -> None:
    assert level_of(model, availability_pct=None) == RatingLevel.BLUE


@pytest.mark.parametrize(("pct", "level"), [(90.0, RatingLevel.BLUE), (89.99, RatingLevel.YELLOW),
                                            (0.0, RatingLevel.YELLOW), (100.0, RatingLevel.BLUE)])
def test_availability_edge_at_90_percent(model: RatingModel, pct: float, level: RatingLevel) -> None:
    assert level_of(model, availability_pct=pct) == level


def test_availability_reason_shows_the_floored_figure_and_window(model: RatingModel) -> None:
    assert texts(model, availability_pct=89.96) == ["监测数据完整率 89.9%（近 24 小时，低于 90%）"]
    assert shown(89.96) == "89.9" and shown(3.0) == "3" and shown(12.34) == "12.3"


def test_one_candidate_is_yellow(model: RatingModel) -> None:
    assert level_of(model, candidates_open=0) == RatingLevel.BLUE
    r = rate(Inputs(candidates_open=1), model)
    assert r.level == RatingLevel.YELLOW and [x.text for x in r.reasons] == ["1 项候选隐患待判定"]


def test_one_open_confirmed_major_is_orange_two_is_red(model: RatingModel) -> None:
    assert level_of(model, confirmed_major_open=1) == RatingLevel.ORANGE
    assert texts(model, confirmed_major_open=1) == ["1 项已确认重大事故隐患未销号"]
    r = rate(Inputs(confirmed_major_open=2), model)
    assert r.level == RatingLevel.RED
    # red's and orange's conditions both test this input: the number is told once, at the red level
    assert [(x.level, x.text) for x in r.reasons] == [(RatingLevel.RED, "2 项已确认重大事故隐患未销号")]


def test_an_active_urgent_alarm_is_orange(model: RatingModel) -> None:
    assert texts(model, urgent_alarms_active=1) == ["1 条紧急报警正在持续"]
    assert level_of(model, urgent_alarms_active=1) == RatingLevel.ORANGE
    assert level_of(model, urgent_alarms_active=0) == RatingLevel.BLUE


def test_an_overdue_rectification_is_red_with_every_reason(model: RatingModel) -> None:
    r = rate(Inputs(confirmed_major_open=1, overdue_rectifications=1), model)
    assert r.level == RatingLevel.RED
    assert [(x.level, x.input) for x in r.reasons] == [
        (RatingLevel.RED, "overdue_rectifications"), (RatingLevel.ORANGE, "confirmed_major_open")]
    assert [x.text for x in r.reasons] == ["1 项重大事故隐患整改逾期", "1 项已确认重大事故隐患未销号"]


def test_every_condition_that_fired_is_a_reason_most_severe_first(model: RatingModel) -> None:
    r = rate(Inputs(3, 1, 4, 2, 42.5), model)
    assert r.level == RatingLevel.RED
    assert [x.text for x in r.reasons] == [
        "1 项重大事故隐患整改逾期", "3 项已确认重大事故隐患未销号", "2 条紧急报警正在持续", "4 项候选隐患待判定",
        "监测数据完整率 42.5%（近 24 小时，低于 90%）"]
    assert [x.value for x in r.reasons] == [1, 3, 2, 4, 42.5]
    assert [x.threshold for x in r.reasons] == [1, 2, 1, 1, 90]


@pytest.mark.parametrize(("overdue", "level"),
                         [(0, RatingLevel.BLUE), (1, RatingLevel.YELLOW), (3, RatingLevel.YELLOW)])
def test_a_warning_left_without_feedback_past_its_limit_is_yellow(model: RatingModel, overdue: int,
                                                                  level: RatingLevel) -> None:
    r = rate(Inputs(availability_pct=100.0, feedback_overdue=overdue), model)
    assert r.level == level
    assert [x.text for x in r.reasons] == ([f"{overdue} 条预警逾期未反馈处置"] if overdue else [])


def test_a_dust_collector_without_its_mandatory_points_is_yellow(model: RatingModel) -> None:
    r = rate(Inputs(availability_pct=100.0, mandatory_missing=2), model)
    assert r.level == RatingLevel.YELLOW and [x.text for x in r.reasons] == ["2 个粉尘涉爆除尘系统必接测点未接入"]
    assert rate(Inputs(availability_pct=100.0), model).level == RatingLevel.BLUE


def test_lower_reasons_stay_when_a_higher_level_decides(model: RatingModel) -> None:
    r = rate(Inputs(urgent_alarms_active=1, candidates_open=2, availability_pct=10.0), model)
    assert r.level == RatingLevel.ORANGE
    assert [x.level for x in r.reasons] == [RatingLevel.ORANGE, RatingLevel.YELLOW, RatingLevel.YELLOW]


def test_another_model_changes_the_rating_and_its_version(tmp_path: Path) -> None:
    data = yaml.safe_load(SHIPPED)
    data["version"] = "test-2"
    data["levels"][2]["conditions"][1]["threshold"] = 50
    p = tmp_path / "rating.yaml"
    p.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    m = load_model(p)
    r = rate(Inputs(availability_pct=60.0), m)
    assert (r.level, r.version) == (RatingLevel.BLUE, "test-2")
    assert rate(replace(Inputs(), availability_pct=49.0), m).reasons[0].text.endswith("低于 50%）")


# --- validation of a bad file -----------------------------------------------------------------------


def bad(tmp_path: Path, text: str) -> str:
    p = tmp_path / "rating.yaml"
    p.write_text(text, encoding="utf-8")
    with pytest.raises(SourceError) as exc:
        load_model(p)
    msg = str(exc.value)
    assert str(p) in msg, msg
    return msg


def edit(mutate: object) -> str:
    data = yaml.safe_load(SHIPPED)
    mutate(data)  # type: ignore[operator]
    return yaml.safe_dump(data, allow_unicode=True, sort_keys=False)


def test_unknown_key_is_refused_with_its_line(tmp_path: Path) -> None:
    msg = bad(tmp_path, SHIPPED.replace("availability_window_hours: 24", "availability_window_hours: 24\ncolour: red"))
    line = SHIPPED.splitlines().index("availability_window_hours: 24") + 2
    assert f"rating.yaml:{line}: colour" in msg and "Extra inputs" in msg


def test_unknown_input_is_refused(tmp_path: Path) -> None:
    msg = bad(tmp_path, SHIPPED.replace("input: candidates_open", "input: open_tickets"))
    assert "levels.2.conditions.0.input" in msg


def test_unknown_operator_is_refused(tmp_path: Path) -> None:
    msg = bad(tmp_path, SHIPPED.replace('op: "<"', 'op: "!="'))
    assert "levels.2.conditions.1.op" in msg


def test_levels_out_of_order_or_missing_are_refused(tmp_path: Path) -> None:
    msg = bad(tmp_path, edit(lambda d: d["levels"].reverse()))
    assert "levels: levels must be ['red', 'orange', 'yellow', 'blue']" in msg
    msg = bad(tmp_path, edit(lambda d: d["levels"].pop(1)))
    assert "levels" in msg and "at least 4" in msg


def test_a_level_twice_is_refused(tmp_path: Path) -> None:
    def twice(d: dict[str, list[dict[str, str]]]) -> None:
        d["levels"][1]["level"] = "red"

    assert "each once" in bad(tmp_path, edit(twice))


def test_blue_takes_no_conditions(tmp_path: Path) -> None:
    def blue(d: dict[str, list[dict[str, list[object]]]]) -> None:
        d["levels"][3]["conditions"] = [{"input": "candidates_open", "op": ">=", "threshold": 0, "reason": "x"}]

    assert "levels.3.conditions: blue is what no condition reached" in bad(tmp_path, edit(blue))


@pytest.mark.parametrize(("reason", "why"), [("{count} 项", "unknown placeholder(s) ['count']"),
                                            ("{value 项", "malformed"), ("{0} 项", "unknown placeholder(s) ['0']"),
                                            ("{value.__class__}", "unknown placeholder(s) ['value.__class__']"),
                                            ("{value:d} 项", "does not format")])
def test_reason_templates_are_checked(tmp_path: Path, reason: str, why: str) -> None:
    msg = bad(tmp_path, SHIPPED.replace('reason: "{value} 项候选隐患待判定"', f'reason: "{reason}"'))
    assert "levels.2.conditions.0.reason" in msg and why in msg, msg


def test_percentage_threshold_over_100_is_refused(tmp_path: Path) -> None:
    msg = bad(tmp_path, SHIPPED.replace("threshold: 90", "threshold: 190"))
    assert "levels.2.conditions.1.threshold: availability_pct is a percentage" in msg


def test_negative_threshold_and_missing_version_are_refused(tmp_path: Path) -> None:
    assert "threshold" in bad(tmp_path, SHIPPED.replace("threshold: 2", "threshold: -2"))
    assert "version" in bad(tmp_path, edit(lambda d: d.pop("version")))


def test_yaml_syntax_error_names_the_line(tmp_path: Path) -> None:
    assert "YAML syntax" in bad(tmp_path, SHIPPED.replace("levels:", "levels: [", 1))


def test_every_problem_is_reported_at_once(tmp_path: Path) -> None:
    text = SHIPPED.replace("threshold: 90", "threshold: 190").replace(
        'reason: "{value} 项候选隐患待判定"', 'reason: "{n}"')
    msg = bad(tmp_path, text)
    assert len(msg.splitlines()) == 2
