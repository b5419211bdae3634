"""What every client command shares: its connection settings and credentials."""
