"""A module whose import fails with something other than ImportError (for the SQS worker tests)."""

raise RuntimeError("this module refuses to be imported")
