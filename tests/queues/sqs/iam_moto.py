"""moto's server, authorizing SQS calls as AWS does, and writing down each decision.

`python -m tests.queues.sqs.iam_moto PORT DECISIONS_FILE`. moto checks the callers' IAM policies
once /moto-api/reset-auth says so (INITIAL_NO_AUTH_ACTION_COUNT), with departures from AWS set
right here: it asks for sqs:DeleteMessageBatch (…Batch) where AWS asks for sqs:DeleteMessage,
it takes the resource of GetQueueUrl and CreateQueue (which name a queue by QueueName, not
QueueUrl) and of the message move tasks (SourceArn) for "*", it never asks for the KMS key of a
queue encrypted with one (SSE-KMS: sending needs kms:GenerateDataKey and kms:Decrypt on it,
receiving a message kms:Decrypt, refused as KMS.AccessDeniedException), and it has no record of
what it allowed. Each decision is one JSON line: {"key", "action", "resource", "allowed"}.
"""

import json
import sys
import threading

from moto.iam import access_control
from moto.server import main
from moto.sqs.exceptions import SQSException
from moto.sqs.models import sqs_backends
from moto.sqs.responses import SQSResponse

# AWS authorizes the batch calls by the action of a single entry.
BATCH_ACTIONS = {
    "sqs:ChangeMessageVisibilityBatch": "sqs:ChangeMessageVisibility",
    "sqs:DeleteMessageBatch": "sqs:DeleteMessage",
    "sqs:SendMessageBatch": "sqs:SendMessage",
}

# What SQS asks KMS for on a queue encrypted with a KMS key, by call (ReceiveMessage: when there
# is a message to decrypt).
KMS_ACTIONS = {
    "sqs:SendMessage": ("kms:GenerateDataKey", "kms:Decrypt"),
    "sqs:ReceiveMessage": ("kms:Decrypt",),
}


def queue_key(queue_arn, receiving):
    """The ARN of the KMS key of the queue `queue_arn`, or None (none, or nothing to decrypt)."""
    parts = queue_arn.split(":")
    if len(parts) != 6:
        return None
    region, account, name = parts[3:]
    queue = sqs_backends[account][region].queues.get(name)
    key = queue and queue.kms_master_key_id
    if not key or (receiving and not queue.approximate_number_of_messages):
        return None
    if key.startswith("arn:"):
        return key
    return f"arn:aws:kms:{region}:{account}:{key if key.startswith('alias/') else f'key/{key}'}"


class KmsRefused(SQSException):
    """Raised in the authorization, answered by the call (moto answers an SQS error only there)."""


def allows(access_key, action, resource):
    results = [
        access_control.IAMPolicy(policy).is_action_permitted(action, resource)
        for policy in access_key.collect_policies()
    ]
    denied = access_control.PermissionResult.DENIED in results
    return not denied and access_control.PermissionResult.PERMITTED in results


def patch(decisions_path):
    lock = threading.Lock()
    init = access_control.IAMRequestBase.__init__
    check = access_control.IAMRequestBase.check_action_permitted
    determine = SQSResponse._determine_resource

    def iam_init(self, *args, **kwargs):
        init(self, *args, **kwargs)
        self._action = BATCH_ACTIONS.get(self._action, self._action)

    def write(self, action, resource, allowed):
        decision = {
            "key": self._access_key._access_key_id,
            "action": action,
            "resource": resource,
            "allowed": allowed,
        }
        with lock, open(decisions_path, "a") as decisions:
            decisions.write(json.dumps(decision) + "\n")

    def checked(self, resource):
        allowed = False
        try:
            check(self, resource)
            allowed = True
        finally:
            write(self, self._action, resource, allowed)
        key = queue_key(resource, self._action == "sqs:ReceiveMessage")
        for action in KMS_ACTIONS.get(self._action, ()) if key else ():
            allowed = allows(self._access_key, action, key)
            write(self, action, key, allowed)
            if not allowed:
                raise KmsRefused(
                    "KMS.AccessDeniedException",
                    f"User: {self._access_key.arn} is not authorized to perform: {action} on"
                    f" resource: {key} because no identity-based policy allows the {action}"
                    " action",
                )

    def resource(self):
        if source := self._get_param("SourceArn"):
            return source
        if name := self._get_param("QueueName"):
            account = self._get_param("QueueOwnerAWSAccountId") or self.current_account
            return f"arn:aws:sqs:{self.region}:{account}:{name}"
        return determine(self)

    authorize = SQSResponse._authenticate_and_authorize_normal_action

    def authorized(self, resource):
        try:
            authorize(self, resource)
        except KmsRefused as refusal:
            self.kms_refusal = refusal

    def refusing(call):
        def answer(self):
            if refusal := getattr(self, "kms_refusal", None):
                raise refusal
            return call(self)

        return answer

    SQSResponse._authenticate_and_authorize_normal_action = authorized
    SQSResponse.send_message = refusing(SQSResponse.send_message)
    SQSResponse.receive_message = refusing(SQSResponse.receive_message)
    access_control.IAMRequestBase.__init__ = iam_init
    access_control.IAMRequestBase.check_action_permitted = checked
    SQSResponse._determine_resource = resource


if __name__ == "__main__":
    port, decisions_path = sys.argv[1:3]
    patch(decisions_path)
    main(["-H", "127.0.0.1", "-p", port])
