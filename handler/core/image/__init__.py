"""The image work every request does: decode under limits, parse options, compose, refine, encode."""
