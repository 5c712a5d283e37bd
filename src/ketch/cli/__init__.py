"""The `ketch` command line: parses flags, calls the Engine, formats results."""
