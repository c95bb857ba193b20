"""Visual-document retrieval: MiniDocTable (binary qrels) and MiniDocReport (graded qrels).

MiniDocTable makes series of four sheets with the same title and items but different values, and asks
for "the sheet where Figs is the largest entry", "the sheet listing Plums at 47" or "the sheet where
Limes beat Pears": the title narrows the pool to four pages that differ only in their numbers, so the
page is found only by reading and comparing values. MiniDocReport is a lookup: each report has an
overview, a table and a chart page; a question is graded 2 for its evidence page and 1 for the rest of
its report, like the "-doc" variants of MMEB-V2.

Generators work per group (a series or a report) because pages are shared by several queries; titles
are a function of the group index, so they are unique within a task.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from ume.synth.docpage import Page
from ume.synth.phrasing import Phraser, join_list, think
from ume.synth.rng import pick, sample
from ume.synth.vocab import DOC_CITIES, DOC_COMPANIES, DOC_ITEMS, DOC_PRODUCTS, DOC_SECTORS, DOC_TOPICS

SERIES_PAGES = 4


@dataclass
class DocQuery:
    """A query, its graded relevant pages (index within the group -> grade) and its assistant turn."""

    text: str
    relevant: dict[int, int]
    spec: dict[str, Any]
    think: str
    answer: str


@dataclass
class DocGroup:
    pages: list[Page]
    page_think: list[str]
    page_answer: list[str]
    queries: list[DocQuery]


def _describe_values(p: Phraser, page: Page) -> str:
    pairs = [f"{i} {v}" for i, v in zip(page.items, page.values, strict=True)]
    hi = page.items[int(np.argmax(page.values))]
    lo = page.items[int(np.argmin(page.values))]
    what = "a table" if page.kind == "table" else "a bar chart"
    return think(p.pick([f"The page is titled {page.title}.", f"Title: {page.title}."]),
                 f"it shows {what} of {page.metric}: " + join_list(pairs) + ".",
                 p.pick([f"The largest is {hi} ({max(page.values)}) and the smallest {lo} ({min(page.values)}).",
                         f"{hi} leads with {max(page.values)}; {lo} is last with {min(page.values)}."]))


# ---- MiniDocTable ----------------------------------------------------------------------------------------
def table_matches(q: dict[str, Any], page: dict[str, Any]) -> bool:
    """Whether a page answers a MiniDocTable query spec."""
    if page["title"] != q["title"] or page["kind"] not in ("table", "chart"):
        return False
    vals = dict(zip(page["items"], page["values"], strict=True))
    if q["type"] == "max":
        return vals[q["item"]] == max(page["values"])
    if q["type"] == "min":
        return vals[q["item"]] == min(page["values"])
    if q["type"] == "value":
        return vals[q["item"]] == q["value"]
    return vals[q["item"]] > vals[q["other"]]


def _table_query_text(p: Phraser, q: dict[str, Any], metric: str) -> str:
    t, i = q["title"], q["item"]
    if q["type"] == "max":
        return p.pick([f"Which {t} sheet shows {i} as the largest entry?", f"{t}: the sheet where {i} is highest"])
    if q["type"] == "min":
        return p.pick([f"Which {t} sheet lists {i} as the smallest entry?", f"{t}: the sheet where {i} is lowest"])
    if q["type"] == "value":
        return p.pick([f"Which {t} sheet reports {i} at {q['value']} {metric}?",
                       f"{t}: the sheet with {q['value']} {metric} for {i}"])
    return p.pick([f"Which {t} sheet has more {metric} for {i} than for {q['other']}?",
                   f"{t}: the sheet where {i} beats {q['other']}"])


def table_series(rng: np.random.Generator, index: int) -> DocGroup:
    title = f"{DOC_TOPICS[index % len(DOC_TOPICS)]} {2010 + index // len(DOC_TOPICS)}"
    items = sample(rng, DOC_ITEMS, 4)
    metric = pick(rng, ["crates sold", "kg sold", "orders"])
    while True:  # every sheet has its own maximum and its own minimum
        values = [[int(v) for v in rng.choice(np.arange(10, 100), size=4, replace=False)] for _ in range(4)]
        if len({int(np.argmax(v)) for v in values}) == 4 and len({int(np.argmin(v)) for v in values}) == 4:
            break
    pages = [Page(title, f"Sheet {k + 1}", pick(rng, ["table", "chart"]),
                  pick(rng, [f"{metric.capitalize()} per item this week.", f"Weekly {metric} by item."]),
                  metric, items, values[k]) for k in range(SERIES_PAGES)]
    specs = [pg.spec() for pg in pages]
    p = Phraser(rng)
    queries = []
    for k in range(SERIES_PAGES):
        options = [{"type": t, "title": title, "item": items[int(f(values[k]))]}
                   for t, f in (("max", np.argmax), ("min", np.argmin))]
        options += [{"type": "value", "title": title, "item": i, "value": v} for i, v in zip(items, values[k],
                                                                                            strict=True)]
        options += [{"type": "compare", "title": title, "item": a, "other": b} for a in items for b in items if a != b]
        options = [q for q in options if [table_matches(q, s) for s in specs] == [j == k for j in range(4)]]
        q = pick(rng, options)
        text = _table_query_text(p, q, metric)
        need = {"max": f"{q['item']} above every other entry", "min": f"{q['item']} below every other entry",
                "value": f"{q['item']} at exactly {q.get('value')}",
                "compare": f"{q['item']} higher than {q.get('other')}"}[q["type"]]
        q_think = think(p.pick([f"The query is about the {title} sheets.", f"I need a page of the {title} series."]),
                        p.pick([f"All of them list the same items; the right one shows {need}.",
                                f"Only the values tell the sheets apart: I need {need}."]))
        queries.append(DocQuery(text, {k: 1}, q, q_think, f"{title} sheet with {need}."))
    answers = [f"{pg.title} {pg.subtitle}: {pg.kind} of {metric}, {pg.items[int(np.argmax(pg.values))]} highest."
               for pg in pages]
    return DocGroup(pages, [_describe_values(p, pg) for pg in pages], answers, queries)


# ---- MiniDocReport ---------------------------------------------------------------------------------------


def report(rng: np.random.Generator, index: int) -> DocGroup:
    n_co, n_sec = len(DOC_COMPANIES), len(DOC_SECTORS)
    name = f"{DOC_COMPANIES[index % n_co]} {DOC_SECTORS[(index // n_co) % n_sec]}"
    title = f"{name} report {2016 + index // (n_co * n_sec)}"
    founded, city, staff = int(rng.integers(1950, 2015)), pick(rng, DOC_CITIES), int(rng.integers(12, 900))
    products = sample(rng, DOC_PRODUCTS, 4)
    units = [int(v) for v in rng.choice(np.arange(10, 100), size=4, replace=False)]
    revenue = [int(v) for v in rng.choice(np.arange(10, 100), size=4, replace=False)]
    pages = [
        Page(title, "Overview", "text", f"{name} was founded in {founded} in {city}. It employs {staff} people "
             f"and sells {len(products)} product lines: {join_list(products)}."),
        Page(title, "Sales", "table", "Units sold per product line.", "units", products, units),
        Page(title, "Finance", "chart", "Revenue per product line, in thousands.", "revenue", products, revenue),
    ]
    p = Phraser(rng)
    top_units = products[int(np.argmax(units))]
    low_rev = products[int(np.argmin(revenue))]
    asks = [
        ("founded", p.pick([f"When was {name} founded?", f"In which year and city did {name} start?"]),
         0, f"the founding of {name}"),
        ("units", p.pick([f"Which product line sold the most units at {name}?",
                          f"Top-selling product of {name} by units"]), 1, f"unit sales of {name}"),
        ("revenue", p.pick([f"Which product line earned {name} the least revenue?",
                            f"Weakest product of {name} by revenue"]), 2, f"revenue of {name}"),
    ]
    queries = []
    for qtype, text, k, topic in asks:
        q_think = think(p.pick([f"The question is about {topic}.", f"This asks about {topic}."]),
                        p.pick([f"That is on the {pages[k].subtitle.lower()} page of the {title}.",
                                f"The {title} answers it on its {pages[k].subtitle.lower()} page."]))
        queries.append(DocQuery(text, {j: 2 if j == k else 1 for j in range(3)},
                                {"type": qtype, "title": title}, q_think, f"{title}, {pages[k].subtitle} page."))
    page_think = [think(f"The page is titled {title}, the overview.", pages[0].text),
                  _describe_values(p, pages[1]), _describe_values(p, pages[2])]
    page_answer = [f"{title}, Overview page: {pages[0].text.split('.')[0]}.",
                   f"{title}, Sales page: {top_units} sold the most units.",
                   f"{title}, Finance page: {low_rev} earned the least revenue."]
    return DocGroup(pages, page_think, page_answer, queries)
