"""Use cases the edges (CLI, API, web) call. They open transactions and wire hooks; the rules live below."""
