"""Reliability and security suites (fault, soak, load, bad input, privacy) that write their own figures."""
