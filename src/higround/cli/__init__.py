"""The ``higround`` command line."""
