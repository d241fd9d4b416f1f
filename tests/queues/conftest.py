"""Fixtures of the queue tests shared by both backends' folders and the end-to-end test."""

import pytest


@pytest.fixture
def aws_env(monkeypatch, sqs_endpoint_url):
    """Fake credentials and the moto endpoint, through boto3's standard variables."""
    env = {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_SESSION_TOKEN": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_ENDPOINT_URL_SQS": sqs_endpoint_url,
    }
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return env
