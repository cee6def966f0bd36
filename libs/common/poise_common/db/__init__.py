"""Persistence: SQLAlchemy 2 models, engines by URL dialect, Alembic migrations."""
