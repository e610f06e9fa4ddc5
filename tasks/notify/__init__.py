"""Telling downstream systems about an outcome: the body (`body`, pure), the one place
notifications are made pending (`outbox`), and one signed delivery attempt (`delivery`)."""
