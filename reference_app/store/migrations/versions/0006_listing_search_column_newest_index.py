"""listings read newest first through an index; PostgreSQL's search document in a stored column

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-05 03:20:00
"""
from alembic import op

from reference_app.store import search_ddl


revision = '0006'
down_revision = '0005'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('listings', schema=None) as batch_op:
        batch_op.create_index('ix_listings_newest', ['created_at', 'id'], unique=False)
    search_ddl.install_on(op.get_bind())


def downgrade() -> None:
    search_ddl.install_on(op.get_bind(), stored_document=False)
    with op.batch_alter_table('listings', schema=None) as batch_op:
        batch_op.drop_index('ix_listings_newest')
