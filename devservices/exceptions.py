"""The one error of the dev services: a service is not reachable and could not be started."""


class ServiceUnavailable(RuntimeError):
    """A service the caller needs is not reachable and could not be started here."""
