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


def port_number(text):
    """A TCP port, 1 to 65535."""
    number = whole_number(text)
    if not 1 <= number <= 65535:
        raise argparse.ArgumentTypeError(f"{number} is no TCP port (1 to 65535)")
    return number
