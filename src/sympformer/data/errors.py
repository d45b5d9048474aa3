"""The one exception type of `sympformer.data`."""


class DataError(ValueError):
    """A data source, tokenizer file or token cache is missing, invalid or inconsistent.

    Messages are one line, name the file or setting at fault and say how to fix it. Subclasses
    `ValueError`, so callers that catch bad user input catch it too.
    """
