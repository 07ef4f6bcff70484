"""The factory station: end-of-line runs (serial, verdict banner, exit status) and certificates."""
