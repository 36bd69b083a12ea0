"""Sends a code to a sandbox test number and checks it: the smallest useful client.

Generate the stubs from the repository's proto/ first (grpcio-tools bundles google/protobuf):

    pip install grpcio-tools
    mkdir -p gen
    python -m grpc_tools.protoc -I proto \
        -I "$(python -c 'import grpc_tools, os; print(os.path.dirname(grpc_tools.__file__))')/_proto" \
        --python_out=gen --grpc_python_out=gen proto/itnio/otp/v1/*.proto

(or `python tests/interop/gen_stubs.py gen`), then run against a server in sandbox mode:

    PYTHONPATH=gen ITNIO_OTP_GRPC_ADDR=localhost:50051 python examples/python/send_and_check.py
"""

import os
import time

import grpc

from itnio.otp.v1 import apps_pb2, apps_pb2_grpc, templates_pb2, templates_pb2_grpc
from itnio.otp.v1 import verifications_pb2, verifications_pb2_grpc


def main():
    addr = os.environ.get("ITNIO_OTP_GRPC_ADDR", "localhost:50051")
    suffix = int(time.time() * 1000) % 100_000_000
    with grpc.insecure_channel(addr) as channel:
        apps = apps_pb2_grpc.AppServiceStub(channel)
        templates = templates_pb2_grpc.TemplateServiceStub(channel)
        verifications = verifications_pb2_grpc.VerificationServiceStub(channel)

        # An app holds code expiry and send limits; a template shapes the code and the message.
        app = apps.CreateApp(apps_pb2.CreateAppRequest(name=f"py-app-{suffix}"), timeout=10).app
        template = templates.CreateTemplate(
            templates_pb2.CreateTemplateRequest(
                app_id=app.app_id, name=f"py-tpl-{suffix}", text="Your code is ##code##", code_length=4
            ),
            timeout=10,
        ).template

        # In sandbox mode, numbers starting with 999 are test numbers; a 4-digit numeric code is "1234".
        sent = verifications.SendVerification(
            verifications_pb2.SendVerificationRequest(
                app_id=app.app_id, template_id=template.template_id, phone_number="+999 00 1234 5678"
            ),
            timeout=10,
        )
        print(f"sent verification {sent.verification_id} to {sent.phone_number}")

        checked = verifications.CheckVerification(
            verifications_pb2.CheckVerificationRequest(verification_id=sent.verification_id, code="1234"),
            timeout=10,
        )
        # A wrong or expired code is not an error: it is a match state.
        print("match state:", verifications_pb2.MatchState.Name(checked.match_state))


if __name__ == "__main__":
    main()
