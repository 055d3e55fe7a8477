"""Command-line experiments over rlpg (run as `python -m experiments.<name>`)."""
