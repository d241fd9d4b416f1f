"""The load test (`python -m loadtest`, `make loadtest`): a real stack, many clients, exact counts."""
