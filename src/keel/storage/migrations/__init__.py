"""Alembic migrations for Keel's own system tables (data tables are metadata-driven and never appear here)."""
