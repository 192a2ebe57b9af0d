"""Pure tests of the sans-I/O protocol core (no sockets, no gevent)."""
