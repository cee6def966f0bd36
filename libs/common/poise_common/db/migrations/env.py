"""Alembic environment: runs on the connection that poise_common.db.engine.upgrade hands it."""

from alembic import context

from poise_common.db.models import Base

connection = context.config.attributes.get("connection")
if connection is None:
    raise RuntimeError("run migrations through poise_common.db.engine.upgrade()")
context.configure(connection=connection, target_metadata=Base.metadata, render_as_batch=True)
with context.begin_transaction():
    context.run_migrations()
