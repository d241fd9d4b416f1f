"""argparse `type=` functions shared by the project's commands: a bad flag is a usage error."""

import argparse


def whole_number(minimum):
    """A `type=` function accepting whole numbers >= `minimum`."""

    def parse(text):
        try:
            number = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
        if number < minimum:
            raise argparse.ArgumentTypeError(f"{number} must be {minimum} or more")
        return number

    parse.__name__ = f"whole number >= {minimum}"
    return parse


positive_int = whole_number(1)
non_negative_int = whole_number(0)
