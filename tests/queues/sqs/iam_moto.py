"""moto's server, authorizing SQS calls as AWS does, and writing down each decision.

`python -m tests.queues.sqs.iam_moto PORT DECISIONS_FILE`. moto checks the callers' IAM policies
once /moto-api/reset-auth says so (INITIAL_NO_AUTH_ACTION_COUNT), with three departures from AWS
set right here: it asks for sqs:DeleteMessageBatch (…Batch) where AWS asks for sqs:DeleteMessage,
it takes the resource of GetQueueUrl and CreateQueue (which name a queue by QueueName, not
QueueUrl) and of the message move tasks (SourceArn) for "*", and it has no record of what it
allowed. Each decision is one JSON line: {"key", "action", "resource", "allowed"}.
"""

import json
import sys
import threading

from moto.iam import access_control
from moto.server import main
from moto.sqs.responses import SQSResponse

# AWS authorizes the batch calls by the action of a single entry.
BATCH_ACTIONS = {
    "sqs:ChangeMessageVisibilityBatch": "sqs:ChangeMessageVisibility",
    "sqs:DeleteMessageBatch": "sqs:DeleteMessage",
    "sqs:SendMessageBatch": "sqs:SendMessage",
}


def patch(decisions_path):
    lock = threading.Lock()
    init = access_control.IAMRequestBase.__init__
    check = access_control.IAMRequestBase.check_action_permitted
    determine = SQSResponse._determine_resource

    def iam_init(self, *args, **kwargs):
        init(self, *args, **kwargs)
        self._action = BATCH_ACTIONS.get(self._action, self._action)

    def checked(self, resource):
        allowed = False
        try:
            check(self, resource)
            allowed = True
        finally:
            decision = {
                "key": self._access_key._access_key_id,
                "action": self._action,
                "resource": resource,
                "allowed": allowed,
            }
            with lock, open(decisions_path, "a") as decisions:
                decisions.write(json.dumps(decision) + "\n")

    def resource(self):
        if source := self._get_param("SourceArn"):
            return source
        if name := self._get_param("QueueName"):
            account = self._get_param("QueueOwnerAWSAccountId") or self.current_account
            return f"arn:aws:sqs:{self.region}:{account}:{name}"
        return determine(self)

    access_control.IAMRequestBase.__init__ = iam_init
    access_control.IAMRequestBase.check_action_permitted = checked
    SQSResponse._determine_resource = resource


if __name__ == "__main__":
    port, decisions_path = sys.argv[1:3]
    patch(decisions_path)
    main(["-H", "127.0.0.1", "-p", port])
