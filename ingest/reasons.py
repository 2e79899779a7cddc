"""Every machine reason the collector writes to `dead_letters`, as a sentence a safety officer understands and
what to do about it (Chinese first, then English).

The console's 数据问题 page and the HTTP API's dead-letter list show these instead of the bare code.
tests/unit/test_dead_letter_reasons.py scans ingest/ for every reason the code can emit and fails when one
has no entry here, so a new reason cannot reach a user untranslated.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["REASONS", "Reason", "explain"]


@dataclass(frozen=True)
class Reason:
    zh: str      # what happened, plainly, and what to do (Chinese, for users)
    en: str      # the same in English


REASONS: dict[str, Reason] = {
    "bad_topic": Reason("网关发布到了不属于接口约定的主题，数据未被接收。"
                        "请按约定发布到 rw/v1/{网关编号}/telemetry 或 status。",
                        "Published to a topic outside the contract; use rw/v1/{gateway}/telemetry or status."),
    "unknown_gateway": Reason("发送数据的网关未在系统中登记，数据未被接收。"
                              "请先在“网关”页登记该网关，或检查网关编号配置。",
                              "The gateway is not registered; register it or fix its configured id."),
    "gateway_disabled": Reason("该网关已被停用，数据未被接收。如需恢复接入，请联系监管部门启用该网关。",
                               "The gateway is disabled; ask the bureau to enable it."),
    "store_failed": Reason("这条消息在写入数据库时出错，已单独留存。请联系系统管理员查看详情。",
                           "Storing this message failed; it was set aside. Ask the administrator."),
    "invalid_utf8": Reason("消息不是有效的 UTF-8 文本（可能是乱码或二进制数据）。请检查网关的数据格式与编码设置。",
                           "The message is not valid UTF-8 text; check the gateway's encoding."),
    "invalid_json": Reason("消息不是有效的 JSON 格式，无法解析。请检查网关的数据格式配置。",
                           "The message is not valid JSON; check the gateway's payload format."),
    "payload_too_large": Reason("单条消息过大，超过系统上限。请让网关分多条消息发送。",
                                "The message is too large; have the gateway split it."),
    "bad_schema": Reason("消息结构与接口约定不符（缺少 readings 或字段类型不对）。请对照接入说明检查网关配置。",
                         "The message does not follow the contract's structure; check the gateway's format."),
    "no_readings": Reason("消息中没有任何读数（readings 为空）。请检查网关是否正确采集了测点。",
                          "The message carries no readings; check the gateway's acquisition."),
    "too_many_readings": Reason("单条消息中的读数过多，超过系统上限。请让网关分多条消息发送。",
                                "Too many readings in one message; have the gateway split it."),
    "bad_tag": Reason("读数的测点标签为空或过长（须为 1–64 个字符）。请检查网关的测点标签配置。",
                      "A reading's tag is empty or too long (1-64 characters); check the gateway's tags."),
    "bad_value_type": Reason("读数的数值不是数字（例如是文字）。请检查网关对该测点的数据类型配置。",
                             "A reading's value is not a number; check the point's data type on the gateway."),
    "non_finite_value": Reason("读数为无效数值（NaN 或无穷大），通常是传感器故障或断线。请检查该测点的传感器和接线。",
                               "A reading is NaN or infinite, usually a faulty or disconnected sensor."),
    "bad_quality": Reason("读数的质量标记无效（须为 good、uncertain 或 bad）。请检查网关配置。",
                          "A reading's quality flag is invalid (good, uncertain or bad); check the gateway."),
    "bad_timestamp": Reason("读数时间格式无法识别。请让网关使用毫秒时间戳或 RFC 3339 时间格式。",
                            "The reading's time cannot be read; use epoch milliseconds or RFC 3339."),
    "missing_timestamp": Reason("读数没有时间（消息和读数上都没有 ts）。请让网关为每条消息附上采集时间。",
                                "The reading has no time; have the gateway send 'ts' with each message."),
    "timestamp_out_of_range": Reason("读数时间与服务器时间相差过大（网关时钟可能不准），请校准网关时间。",
                                     "The reading's time is too far from the server's (gateway clock off?); "
                                     "set the gateway's clock."),
    # Sparkplug B (ingest/sparkplug, docs/sparkplug.md)
    "sparkplug_decode": Reason("网关按 Sparkplug B 主题发送的消息不是有效的 Sparkplug B（protobuf）数据，"
                               "整条消息未被接收。请检查网关的 Sparkplug B 设置或固件版本。",
                               "Not a Sparkplug B protobuf payload; check the gateway's Sparkplug B settings."),
    "sparkplug_topic": Reason("网关发布到了 spBv1.0/ 下不符合 Sparkplug B 规范的主题，数据未被接收。"
                              "请按 spBv1.0/{组}/{消息类型}/{网关编号}[/{设备}] 发布。",
                              "A topic under spBv1.0/ that is not a Sparkplug B topic; use "
                              "spBv1.0/{group}/{type}/{gateway}[/{device}]."),
    "sparkplug_type": Reason("该指标的数据类型不是数值（例如字符串、日期或数组），系统只接收数值和开关量。"
                             "如需监测，请在网关上改为数值类型的指标。",
                             "The metric's datatype is not numeric (string, date, array, ...); only numbers and "
                             "booleans are readings."),
    "sparkplug_null": Reason("该指标的值为空（is_null），通常是传感器离线或网关未采集到数据。请检查该测点的采集。",
                             "The metric's value is null (is_null): usually the sensor is offline or unread."),
    "sparkplug_alias": Reason("网关使用了未在出生消息（NBIRTH/DBIRTH）中声明的指标别名，无法确定是哪个测点。"
                              "系统已请求网关重新发送出生消息，之后的数据会正常接收。",
                              "A metric alias never declared in a birth; a rebirth was requested, later data "
                              "will be understood."),
}


def explain(reason: str) -> Reason:
    """The plain text for a reason code; an unknown one (from an older or newer version) is shown as is."""
    return REASONS.get(reason) or Reason(f"其他问题（{reason}）。请联系系统管理员。", f"Other problem ({reason}).")
