"""Metadata: object and field definitions, the field type registry, schema snapshots, packages, plan and apply."""
