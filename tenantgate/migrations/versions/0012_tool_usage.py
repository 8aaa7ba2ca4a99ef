"""usage events and rollups count the hosted tools a Responses answer used, and what they cost

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-07

Web and file search calls and code interpreter sessions (the Usage API's ``web_search_calls``,
``file_search_calls`` and ``code_interpreter_sessions`` families), each with its own cost column so the costs API
and invoices show them as line items; rollups also count the responses that searched the web. Existing rows used
no metered tool: every new column is 0.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None

_COLUMNS = (
    "web_search_calls",
    "file_search_calls",
    "code_interpreter_sessions",
    "cost_web_search_nusd",
    "cost_file_search_nusd",
    "cost_code_interpreter_nusd",
)


_ROLLUP_ONLY = ("web_search_requests",)
"""Responses that searched the web (the web search family's ``num_model_requests``)."""


def upgrade() -> None:
    for table, names in (("usage_events", _COLUMNS), ("usage_rollups", (*_ROLLUP_ONLY, *_COLUMNS))):
        with op.batch_alter_table(table) as batch_op:
            for name in names:
                batch_op.add_column(sa.Column(name, sa.BigInteger(), server_default="0", nullable=False))


def downgrade() -> None:
    for table, names in (("usage_rollups", (*_ROLLUP_ONLY, *_COLUMNS)), ("usage_events", _COLUMNS)):
        with op.batch_alter_table(table) as batch_op:
            for name in reversed(names):
                batch_op.drop_column(name)
