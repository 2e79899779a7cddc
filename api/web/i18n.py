"""Languages of the console: Chinese first (zh_CN, the default), English on request.

Messages live in gettext catalogs, `api/web/locale/{zh_CN,en}/LC_MESSAGES/messages.po`, edited as text
and committed; nothing binary is committed. At start-up each catalog is parsed and compiled in memory
with Babel (`read_po` → `write_mo` → `gettext.GNUTranslations`), so a fresh checkout runs without a
build step and a broken catalog fails the start, not a page. Message ids are English; the zh_CN
catalog must translate every one (tests/unit/test_console_i18n.py checks it against the templates).

To add messages: `pybabel extract -F api/web/babel.cfg -o /tmp/messages.pot api/web` then
`pybabel update -i /tmp/messages.pot -d api/web/locale`, translate, commit the .po files.
"""

from __future__ import annotations

import gettext
import io
from dataclasses import dataclass
from pathlib import Path

from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po

LOCALE_DIR = Path(__file__).parent / "locale"
LOCALES = ("zh_CN", "en")
DEFAULT = "zh_CN"
HTML_LANG = {"zh_CN": "zh-CN", "en": "en"}
LANG_COOKIE = "rw_lang"


@dataclass(frozen=True)
class Catalogs:
    by_locale: dict[str, gettext.GNUTranslations]

    def get(self, locale: str) -> gettext.GNUTranslations:
        return self.by_locale.get(locale) or self.by_locale[DEFAULT]


def compile_catalog(po_path: Path, locale: str) -> gettext.GNUTranslations:
    with po_path.open("rb") as f:
        catalog = read_po(f, locale=locale)
    buf = io.BytesIO()
    write_mo(buf, catalog)
    buf.seek(0)
    return gettext.GNUTranslations(buf)


def load_catalogs(locale_dir: Path = LOCALE_DIR) -> Catalogs:
    return Catalogs({loc: compile_catalog(locale_dir / loc / "LC_MESSAGES" / "messages.po", loc)
                     for loc in LOCALES})


def pick_locale(cookie: str | None) -> str:
    """The cookie's choice when it is one we have; otherwise Chinese (the browser's preference is not
    consulted: a bureau machine with an English OS still gets the Chinese console)."""
    return cookie if cookie in LOCALES else DEFAULT
