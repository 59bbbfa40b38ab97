"""The endpoint circuits' published verdicts, read by every worker's gate.

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

TIME = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "circuit_states",
        sa.Column("endpoint_id", sa.String(200), nullable=False),
        sa.Column("phase", sa.String(16), nullable=False),
        sa.Column("next_probe_at", TIME),
        sa.Column("probe_lease_until", TIME),
        sa.Column("reason", sa.Text()),
        sa.Column("trips", sa.Integer(), nullable=False),
        sa.Column("opened_at", TIME),
        sa.Column("changed_at", TIME, nullable=False),
        sa.PrimaryKeyConstraint("endpoint_id", name="pk_circuit_states"),
    )


def downgrade() -> None:
    op.drop_table("circuit_states")
