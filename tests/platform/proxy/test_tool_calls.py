"""Hosted tools counted from a Responses output and priced: generated outputs, hostile items included.

Whatever the output holds, a search is one call per call item, a code interpreter session one per container, and
the cost is exactly those counts at the price table's tool prices, never a crash and never a count twice.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from tenantgate.core.exchange import NO_TOOL_CALLS, ToolCalls, Usage
from tenantgate.platform.proxy.usage import tool_calls_of
from tenantgate.tenants.metering.pricing import NANOS_PER_USD, UNPRICED_TOOL, Measure, PriceBook, PriceTable

BOOK = PriceBook.load()
AT = 1_796_688_000.0  # 2026-12-08: a table with tool prices (2026-12-07 on)
CONTAINERS = ["cntr_a", "cntr_b", "cntr_c"]

junk = st.one_of(st.none(), st.integers(), st.text(max_size=8), st.lists(st.integers(), max_size=2))
item = st.one_of(
    st.fixed_dictionaries({"type": st.just("web_search_call"), "id": st.text(max_size=8)}),
    st.fixed_dictionaries({"type": st.just("file_search_call"), "queries": st.lists(st.text(max_size=4))}),
    st.fixed_dictionaries(
        {
            "type": st.just("code_interpreter_call"),
            "id": st.text(max_size=8),
            "container_id": st.sampled_from(CONTAINERS),
        }
    ),
    st.fixed_dictionaries({"type": st.sampled_from(["message", "reasoning", "function_call", "web_search"])}),
    st.dictionaries(st.sampled_from(["type", "container_id", "id"]), junk, max_size=3),
    junk,
)


def _expected(output: list[Any]) -> ToolCalls:
    dicts = [i for i in output if isinstance(i, dict)]
    web = sum(1 for i in dicts if i.get("type") == "web_search_call")
    files = sum(1 for i in dicts if i.get("type") == "file_search_call")
    sessions = {
        i["container_id"] if isinstance(i.get("container_id"), str) else str(i.get("id"))
        for i in dicts
        if i.get("type") == "code_interpreter_call"
    }
    return ToolCalls(web, files, len(sessions))


@given(output=st.lists(item, max_size=12))
def test_every_call_is_counted_once_and_priced_at_the_table(output: list[Any]) -> None:
    tools = tool_calls_of(output)
    assert tools == _expected(output)
    assert tool_calls_of(output + output).code_interpreter_sessions == tools.code_interpreter_sessions  # same boxes
    usage = Usage(input_tokens=100, output_tokens=10)
    plain = BOOK.cost("gpt-4o-mini", usage, at=AT)
    cost = BOOK.cost("gpt-4o-mini", usage, measure=Measure(tools=tools), at=AT)
    assert cost.priced and cost.input_nusd == plain.input_nusd and cost.output_nusd == plain.output_nusd
    assert cost.web_search_nusd == tools.web_search_calls * 10_000_000  # 10.00 per 1,000 calls
    assert cost.file_search_nusd == tools.file_search_calls * 2_500_000  # 2.50 per 1,000 calls
    assert cost.code_interpreter_nusd == tools.code_interpreter_sessions * 30_000_000  # 0.03 per session
    assert cost.total_nusd - plain.total_nusd == (
        cost.web_search_nusd + cost.file_search_nusd + cost.code_interpreter_nusd
    )


def test_output_that_is_not_a_list_uses_no_tool() -> None:
    for output in (None, {}, "web_search_call", 3):
        assert tool_calls_of(output) == NO_TOOL_CALLS


def test_a_tool_without_a_price_leaves_the_response_unpriced_never_free() -> None:
    table = BOOK.table_at(AT)
    without = PriceTable(table.version, table.effective_from, table.prices, tools={}, source=table.source)
    book = PriceBook([without])
    usage = Usage(input_tokens=100, output_tokens=10)
    cost = book.cost("gpt-4o-mini", usage, measure=Measure(tools=ToolCalls(web_search_calls=1)), at=AT)
    assert cost.unpriced == UNPRICED_TOOL and not cost.priced and cost.total_nusd == 0
    # Without tool calls the same table prices it.
    assert book.cost("gpt-4o-mini", usage, at=AT).priced
    assert Decimal(book.cost("gpt-4o-mini", usage, at=AT).total_nusd) / NANOS_PER_USD > 0
