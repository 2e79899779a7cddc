"""The console's message catalogs: every message the templates and code use has a Chinese translation
(Chinese is the default language), the catalogs compile, and the English catalog falls back to the ids."""

from __future__ import annotations

from pathlib import Path

from babel.messages.extract import extract_from_dir
from babel.messages.pofile import read_po

from api.web import i18n
from api.web.app import MESSAGE_IDS

WEB = Path(i18n.__file__).parent


def used_messages() -> set[str]:
    method_map = [("**/templates/**.html", "jinja2"), ("**.py", "python")]
    options = {"**/templates/**.html": {"extensions": "jinja2.ext.i18n"}}
    found = {msg for _f, _l, msg, _c, _ctx in extract_from_dir(str(WEB), method_map, options_map=options)
             if isinstance(msg, str)}
    return found | set(MESSAGE_IDS)


def test_every_message_has_a_chinese_translation() -> None:
    with (WEB / "locale" / "zh_CN" / "LC_MESSAGES" / "messages.po").open("rb") as f:
        zh = {m.id: m.string for m in read_po(f) if m.id}
    used = used_messages()
    assert len(used) > 40
    missing = sorted(m for m in used if not zh.get(m))
    assert missing == [], f"untranslated in zh_CN: {missing}"


def test_catalogs_compile_and_chinese_is_the_default() -> None:
    cats = i18n.load_catalogs()
    assert cats.get("zh_CN").gettext("Live alarm board") == "实时报警看板"
    assert cats.get("en").gettext("Live alarm board") == "Live alarm board"
    assert i18n.pick_locale(None) == "zh_CN" and i18n.pick_locale("fr") == "zh_CN"
    assert i18n.pick_locale("en") == "en"
    assert cats.get("../../etc") is cats.get("zh_CN")
