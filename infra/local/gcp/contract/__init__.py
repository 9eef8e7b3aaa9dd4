"""Contract server internals; see ../README.md."""
