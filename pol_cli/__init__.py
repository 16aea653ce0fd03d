"""The `pol` command line."""
