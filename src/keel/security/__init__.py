"""Security: users, passwords, profiles, permission sets, roles, groups and sharing, compiled to predicates."""
