"""argparse `type=` functions for the queues commands: a bad flag is a usage error, not a traceback."""

import argparse


def whole_number(text):
    """Any whole number (the command checks its range)."""
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None


def positive_int(text):
    """A whole number of 1 or more."""
    number = whole_number(text)
    if number < 1:
        raise argparse.ArgumentTypeError(f"{number} must be 1 or more")
    return number
