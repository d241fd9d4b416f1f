"""argparse `type=` functions shared by the project's commands: a bad flag is a usage error."""

import argparse


def whole_number(minimum):
    """A `type=` function accepting whole numbers >= `minimum`."""
    return _bounded(int, "a whole number", minimum)


def number(minimum, maximum):
    """A `type=` function accepting numbers (decimals too) from `minimum` to `maximum`."""
    return _bounded(float, "a number", minimum, maximum)


def _bounded(convert, kind, minimum, maximum=None):
    def parse(text):
        try:
            value = convert(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not {kind}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"{value} must be {minimum} or more")
        if maximum is not None and value > maximum:
            raise argparse.ArgumentTypeError(f"{value} must be {maximum} or less")
        return value

    parse.__name__ = f"{kind} >= {minimum}"
    return parse


positive_int = whole_number(1)
non_negative_int = whole_number(0)
