"""Quoting bad input in error messages, length-capped: one bad token can be megabytes long."""

QUOTE_CHARS = 80  # the most characters of bad input an error message quotes


def quote(text, limit=QUOTE_CHARS):
    """repr() of text for an error message; beyond limit characters, the first limit and the length.

    One bad token can be megabytes long: quoted whole, it would flood stderr and the manifest.
    """
    text = str(text)
    if len(text) <= limit:
        return repr(text)
    return f"{text[:limit]!r}... ({len(text):,} characters)"
