"""scoring models per tenant

A calibrated model is fitted to one customer's raters; until now the active one scored every
tenant's candidates. Models now belong to a tenant and are active per (tenant, framework).

Existing models: ``poise calibrate`` recorded in each report whose interviews it was fitted on
(``report["tenant"]``: a tenant, or "all" with ``--all-tenants``).
- Fitted on one tenant's interviews: the model becomes that tenant's, and stays active if it was,
  now for that tenant only (its scores do not change; every other tenant's go back to the norms
  or to its own model).
- Fitted on every tenant's interviews, or with no tenant recorded: no tenant can be said to have
  chosen it, so it is kept for the record with no tenant and made inactive; it scores no one (the
  tenants that used it go back to the framework's norms). Calibrate again for a tenant to replace it.
Downgrading drops the tenant; at most one model per framework may then stay active, so only the
most recently activated active one is kept active.

Revision ID: 0008
Revises: 0007
"""

from alembic import op
import sqlalchemy as sa


revision = '0008'
down_revision = '0007'
branch_labels = None
depends_on = None

POOLED = "all"  # what calibrate recorded as the tenant of a model fitted on every tenant's interviews


def _models() -> sa.Table:
    return sa.Table(
        'scoring_models', sa.MetaData(),
        sa.Column('version', sa.String(160), primary_key=True), sa.Column('tenant', sa.String(64)),
        sa.Column('framework', sa.String(128)), sa.Column('report', sa.JSON()), sa.Column('active', sa.Boolean()),
        sa.Column('activated_at', sa.Float()),
    )


def _owner(report: dict | None) -> str | None:
    tenant = (report or {}).get('tenant')
    return tenant if isinstance(tenant, str) and tenant and tenant != POOLED else None


def _assign_tenants(connection) -> None:
    models = _models()
    for version, report in connection.execute(sa.select(models.c.version, models.c.report)).all():
        owner = _owner(report)
        values = {'tenant': owner} if owner is not None else {'tenant': None, 'active': False}
        connection.execute(sa.update(models).where(models.c.version == version).values(**values))


def _keep_one_active_per_framework(connection) -> None:
    models = _models()
    rows = connection.execute(
        sa.select(models.c.version, models.c.framework).where(models.c.active.is_(True))
        .order_by(models.c.activated_at.desc().nulls_last(), models.c.version)
    ).all()
    kept: set[str] = set()
    for version, framework in rows:
        if framework in kept:
            connection.execute(sa.update(models).where(models.c.version == version).values(active=False))
        kept.add(framework)


def upgrade() -> None:
    with op.batch_alter_table('scoring_models', schema=None) as batch_op:
        batch_op.add_column(sa.Column('tenant', sa.String(length=64), nullable=True))
        batch_op.create_index(batch_op.f('ix_scoring_models_tenant'), ['tenant'], unique=False)
    _assign_tenants(op.get_bind())
    op.create_index('ux_scoring_models_one_active', 'scoring_models', ['tenant', 'framework'], unique=True,
                    sqlite_where=sa.text('active'), postgresql_where=sa.text('active'))


def downgrade() -> None:
    op.drop_index('ux_scoring_models_one_active', table_name='scoring_models')
    _keep_one_active_per_framework(op.get_bind())
    with op.batch_alter_table('scoring_models', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_scoring_models_tenant'))
        batch_op.drop_column('tenant')
