"""A module whose import fails with something other than ImportError (for the SQS worker tests):
as one that connects at import would, naming the URL (and its password) it could not reach."""

raise RuntimeError("this module refuses to be imported: redis://:s3cret-Pa55@cache:6379/0 is down")
