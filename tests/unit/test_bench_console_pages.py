"""The console page-time bench's pure parts: which links a page leads to, how URLs group into pages, and the
80-column table with its verdict (simulators.bench.console_pages)."""

from __future__ import annotations

import math

from simulators.bench.console_pages import TARGET_MS, PageTimes, crawl, extract_links, page_key, table, worst_page

PAGE = """<a href="/console/hazards?status=candidate&amp;offset=50">下一页</a>
<a href="/console/hazards/12">t</a> <a href="#top">top</a> <a href="https://cdn.example.com/x.js">cdn</a>
<img src="/console/static/logo.png"> <a href="/console/logout">out</a> <a href="/console/lang/en?next=/console/">en</a>
<div hx-get="/console/board/rows" hx-trigger="load"></div> <ul data-rows="/console/points/rows?gateway=gw-a1"></ul>
<form method="get" action="/console/hazards"><select name="status"></select></form>
<form action="/console/points"></form> <form method="post" action="/console/alarms/ack"></form>
<form method="GET"><input name="q"></form>
<a href="/api/v1/hazards">api</a> <a href="gateways/gw-a1">relative</a> <a href="/console/events">sse</a>"""


def test_links_are_every_console_target_a_page_names() -> None:
    got = extract_links(PAGE, "/console/hazards/12")
    assert got == ["/console/hazards?status=candidate&offset=50", "/console/hazards/12", "/console/board/rows",
                   "/console/points/rows?gateway=gw-a1", "/console/hazards/gateways/gw-a1", "/console/hazards",
                   "/console/points"]
    # a GET form without action submits to its own page; POST forms, static files, logout, language, the
    # event stream, the API and other hosts are never followed
    assert extract_links('<form method="get"></form>', "/console/stops") == ["/console/stops"]
    assert extract_links("", "/console/") == []


def test_pages_group_ids_and_query_values() -> None:
    assert page_key("/console/hazards/12") == page_key("/console/hazards/9999") == "/console/hazards/{id}"
    assert page_key("/console/gateways/gw-cem-01") == "/console/gateways/{id}"
    assert page_key("/console/hazards/3/files/44") == "/console/hazards/{id}/files/{id}"
    assert page_key("/console/hazards?status=closed&offset=50") == page_key("/console/hazards?offset=0&status=x") \
        == "/console/hazards?offset&status"
    assert page_key("/console/reports/monthly.xlsx") == "/console/reports/monthly.xlsx"
    assert page_key("/console/") == "/console/"


def test_crawl_follows_links_and_keeps_a_few_urls_per_page() -> None:
    site = {"/console/": '<a href="/console/hazards">l</a>',
            "/console/hazards": "".join(f'<a href="/console/hazards/{i}">t</a>' for i in range(10)),
            **{f"/console/hazards/{i}": '<a href="/console/">home</a><a href="/console/broken">b</a>'
               for i in range(10)}}
    asked: list[str] = []

    def get(url: str) -> tuple[int, str, str]:
        asked.append(url)
        return (200, "text/html; charset=utf-8", site[url]) if url in site else (500, "text/plain", "boom")

    pages = crawl(get, samples=2)
    assert pages["/console/hazards/{id}"] == [("/console/hazards/0", 200), ("/console/hazards/1", 200)]
    assert pages["/console/broken"] == [("/console/broken", 500)]
    assert len(asked) == len(set(asked)) == 5  # each URL once; eight tickets never fetched


def summary(page: str, user: str, server: list[float], status: int = 200, kind: str = "page") -> dict[str, object]:
    t = PageTimes(user, page, kind, [page], [status] * len(server), server, [s + 2 for s in server])
    return t.summary()


def test_table_fits_80_columns_and_names_the_worst_page() -> None:
    pages = [summary("/console/", "bench-duty", [10.0] * 19 + [50.0]),
             summary("/console/reports/clearance", "bench-ent", [100.0] * 18 + [400.0, 500.0]),
             summary("/console/" + "very-long-segment/" * 8 + "{id}", "bench-admin", [5.0] * 20),
             summary("/console/reports/annual.xlsx", "bench-duty", [3000.0] * 5, kind="file")]
    lines = table(pages)
    assert all(len(ln) <= 80 for ln in lines), [len(ln) for ln in lines]
    assert lines[0].split()[:2] == ["page", "user"]
    row = next(ln for ln in lines if ln.startswith("/reports/clearance "))
    assert row.endswith("✗") and " ent " in row
    assert next(ln for ln in lines if "annual.xlsx" in ln).endswith("file")  # listed, not judged
    assert any(ln.startswith("…") and "{id}" in ln for ln in lines)  # shortened from the left
    assert lines[-1].startswith("FAIL: 2/3 pages ≤ 300 ms p95; worst /reports/clearance (ent)")


def test_a_page_passes_only_under_the_target_and_without_errors() -> None:
    assert summary("/console/", "u", [TARGET_MS - 1] * 20)["pass"] is True
    assert summary("/console/", "u", [TARGET_MS + 1] * 20)["pass"] is False
    assert summary("/console/", "u", [1.0] * 20, status=500)["pass"] is False
    broken = summary("/console/x", "u", [math.nan] * 20, status=599)
    assert broken["pass"] is False
    # a page without any time (a dropped connection) is the worst, whatever the others' times
    assert worst_page([summary("/console/", "u", [250.0] * 20), broken])["page"] == "/console/x"
    assert table([broken])[-1].startswith("FAIL: 0/1")
