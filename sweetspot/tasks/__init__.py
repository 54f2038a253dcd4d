"""The four evaluation tasks; each returns rows of the artifact contract."""
