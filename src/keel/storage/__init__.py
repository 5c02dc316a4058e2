"""Storage: engines, transactions, dialect differences, DDL primitives, the id codec and system tables."""
