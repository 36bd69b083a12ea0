"""The whole OTP journey from Python, with stubs generated from proto/ at test time.

Usage: python tests/interop/journey.py HOST:PORT   (the server must run in sandbox mode)

Prints one `ok - ...` line per check (run.sh counts them) and exits non-zero on the first
failed assertion.
"""

import sys
import time
import uuid

import grpc
from grpc_status import rpc_status
from google.rpc import error_details_pb2

import gen_stubs

sys.path.insert(0, str(gen_stubs.generate()))

from itnio.otp.v1 import (  # noqa: E402  (generated just above)
    apps_pb2,
    apps_pb2_grpc,
    common_pb2,
    flows_pb2,
    flows_pb2_grpc,
    records_pb2,
    records_pb2_grpc,
    templates_pb2,
    templates_pb2_grpc,
    verifications_pb2,
    verifications_pb2_grpc,
)

V = verifications_pb2
R = records_pb2
TIMEOUT = 10  # seconds, per unary call
PHONE = "+999 00 1234 5678"  # sandbox test number: delivery succeeds, code is "1234"
PHONE_DIGITS = "9990012345678"


def ok(what):
    print(f"ok - python: {what}", flush=True)


def error_details(err):
    """Unpacks google.rpc.Status details into {type name: message}."""
    status = rpc_status.from_call(err)
    assert status is not None, f"{err.code()} carries no grpc-status-details-bin"
    assert status.code == err.code().value[0], (status.code, err.code())
    found = {}
    for any_msg in status.details:
        for cls in (error_details_pb2.ErrorInfo, error_details_pb2.BadRequest):
            if any_msg.Is(cls.DESCRIPTOR):
                msg = cls()
                any_msg.Unpack(msg)
                found[cls.__name__] = msg
    return found


def expect_error(call, code):
    try:
        call()
    except grpc.RpcError as err:
        assert err.code() == code, f"expected {code}, got {err.code()}: {err.details()}"
        return error_details(err)
    raise AssertionError(f"expected {code}, call succeeded")


def watch(records, request, timeout=15):
    """Reads a WatchRecord stream to its end; returns the messages."""
    messages = list(records.WatchRecord(request, timeout=timeout))
    assert messages, "watch returned no message"
    assert messages[0].changes[0] == R.RECORD_CHANGE_INITIAL, messages[0].changes
    assert messages[-1].final, "last message is not final"
    assert not any(m.final for m in messages[:-1]), "final before the last message"
    return messages


def main(addr):
    run = uuid.uuid4().hex[:8]
    channel = grpc.insecure_channel(addr)
    grpc.channel_ready_future(channel).result(timeout=10)
    apps = apps_pb2_grpc.AppServiceStub(channel)
    templates = templates_pb2_grpc.TemplateServiceStub(channel)
    flows = flows_pb2_grpc.FlowServiceStub(channel)
    verifications = verifications_pb2_grpc.VerificationServiceStub(channel)
    records = records_pb2_grpc.RecordServiceStub(channel)

    # App: short code expiry so that an unchecked verification ends quickly.
    name = f"py-app-{run}"
    app = apps.CreateApp(apps_pb2.CreateAppRequest(name=name, code_expiry_minutes=1), timeout=TIMEOUT).app
    assert app.app_id and app.name == name and app.code_expiry_minutes == 1, app
    ok(f"CreateApp -> app_id {app.app_id}")
    got = apps.GetApp(apps_pb2.GetAppRequest(app_id=app.app_id), timeout=TIMEOUT).app
    assert got.name == name and got.create_time.seconds > 0, got
    ok("GetApp returns the app")

    details = expect_error(
        lambda: apps.CreateApp(apps_pb2.CreateAppRequest(name=name), timeout=TIMEOUT),
        grpc.StatusCode.ALREADY_EXISTS,
    )
    info = details["ErrorInfo"]
    assert (info.domain, info.reason) == ("itniotech.com", "DATA_EXISTS"), info
    ok("CreateApp with a taken name -> ALREADY_EXISTS, ErrorInfo DATA_EXISTS")

    template = templates.CreateTemplate(
        templates_pb2.CreateTemplateRequest(
            app_id=app.app_id, name=f"py-tpl-{run}", text="Your code is ##code##", code_length=4
        ),
        timeout=TIMEOUT,
    ).template
    assert template.template_id and template.app_id == app.app_id and template.code_length == 4, template
    ok(f"CreateTemplate -> template_id {template.template_id}")

    node = flows_pb2.FlowNode(
        waiting_time_seconds=30,
        trigger=flows_pb2.FLOW_TRIGGER_SEND_FAILED,
        channel=common_pb2.CHANNEL_CALL,
    )
    flow = flows.CreateFlow(flows_pb2.CreateFlowRequest(name=f"py-flow-{run}", nodes=[node]), timeout=TIMEOUT).flow
    assert flow.flow_id and list(flow.nodes) == [node], flow
    got = flows.GetFlow(flows_pb2.GetFlowRequest(flow_id=flow.flow_id), timeout=TIMEOUT).flow
    assert got == flow, (got, flow)
    ok(f"CreateFlow + GetFlow -> flow_id {flow.flow_id}")

    # Send with the flow and a caller reference, then check the known sandbox code.
    order_id = f"py-order-{run}"
    sent = verifications.SendVerification(
        V.SendVerificationRequest(
            app_id=app.app_id,
            template_id=template.template_id,
            flow_id=flow.flow_id,
            phone_number=PHONE,
            order_id=order_id,
        ),
        timeout=TIMEOUT,
    )
    assert len(sent.verification_id) == 20 and sent.verification_id.isdigit(), sent
    assert sent.phone_number == PHONE_DIGITS and sent.channel == common_pb2.CHANNEL_SMS, sent
    ok(f"SendVerification -> verification_id {sent.verification_id}")

    check = verifications.CheckVerification(
        V.CheckVerificationRequest(verification_id=sent.verification_id, code="0000"), timeout=TIMEOUT
    )
    assert check.match_state == V.MATCH_STATE_WRONG_CODE, check
    ok("CheckVerification with a wrong code -> MATCH_STATE_WRONG_CODE (not an error)")
    check = verifications.CheckVerification(
        V.CheckVerificationRequest(verification_id=sent.verification_id, code="1234"), timeout=TIMEOUT
    )
    assert check.match_state == V.MATCH_STATE_MATCHED, check
    assert check.verification_id == sent.verification_id and check.phone_number == PHONE_DIGITS, check
    ok("CheckVerification with 1234 -> MATCH_STATE_MATCHED")
    check = verifications.CheckVerification(
        V.CheckVerificationRequest(verification_id=sent.verification_id, code="1234"), timeout=TIMEOUT
    )
    assert check.match_state == V.MATCH_STATE_ALREADY_USED, check
    ok("CheckVerification again -> MATCH_STATE_ALREADY_USED")

    record = records.GetRecord(R.GetRecordRequest(verification_id=sent.verification_id), timeout=TIMEOUT).record
    assert record.verification_id == sent.verification_id, record
    assert record.outcome.match_state == V.MATCH_STATE_MATCHED, record.outcome
    assert record.outcome.order_id == order_id and record.outcome.phone_number == PHONE_DIGITS, record.outcome
    assert record.outcome.verified_time.seconds > 0, record.outcome
    assert len(record.sms_attempts) >= 1, record
    ok("GetRecord by verification_id -> matched, with order_id and an SMS attempt")

    record = records.GetOrderRecord(
        R.GetOrderRecordRequest(app_id=app.app_id, order_id=order_id), timeout=TIMEOUT
    ).record
    assert record.order_id == order_id and record.flow_id == flow.flow_id, record
    assert record.outcome.match_state == V.MATCH_STATE_MATCHED, record.outcome
    ok("GetOrderRecord by order_id -> same verification, with the flow_id")

    # Watch the matched verification: it is final, so the stream ends right away with OK.
    messages = watch(records, R.WatchRecordRequest(verification_id=sent.verification_id))
    assert messages[-1].record.outcome.match_state == V.MATCH_STATE_MATCHED, messages[-1]
    ok(f"WatchRecord (verification_id) of a matched verification ends with OK after {len(messages)} message(s)")
    messages = watch(records, R.WatchRecordRequest(order=R.OrderSelector(app_id=app.app_id, order_id=order_id)))
    assert messages[-1].record.order_id == order_id, messages[-1]
    ok(f"WatchRecord (order) ends with OK after {len(messages)} message(s)")

    # Watch a fresh, never-checked verification from its start: it must end on its own (expiry).
    fresh = verifications.SendVerification(
        V.SendVerificationRequest(app_id=app.app_id, template_id=template.template_id, phone_number=PHONE),
        timeout=TIMEOUT,
    )
    started = time.monotonic()
    messages = watch(records, R.WatchRecordRequest(verification_id=fresh.verification_id))
    changes = [R.RecordChange.Name(c) for m in messages for c in m.changes]
    assert len(messages) >= 2, changes
    assert messages[-1].record.outcome.match_state != V.MATCH_STATE_MATCHED, messages[-1]
    ok(f"WatchRecord of an unchecked verification ends on its own in {time.monotonic() - started:.1f}s: {changes}")

    # A send retried with one request_id (AIP-155) is sent once: the retry replays the answer.
    request_id = str(uuid.uuid4())
    retried = V.SendVerificationRequest(
        app_id=app.app_id, template_id=template.template_id, phone_number=PHONE, request_id=request_id
    )
    first = verifications.SendVerification(retried, timeout=TIMEOUT)
    again = verifications.SendVerification(retried, timeout=TIMEOUT)
    assert again == first and first.order_id, (first, again)
    ok(f"SendVerification retried with one request_id -> replayed (same verification_id, order_id {first.order_id})")
    reused = V.SendVerificationRequest(
        app_id=app.app_id,
        template_id=template.template_id,
        phone_number=PHONE,
        channel=common_pb2.CHANNEL_CALL,
        request_id=request_id,
    )
    details = expect_error(
        lambda: verifications.SendVerification(reused, timeout=TIMEOUT), grpc.StatusCode.FAILED_PRECONDITION
    )
    assert details["ErrorInfo"].reason == "REQUEST_ID_REUSED", details
    ok("the same request_id for a different request -> FAILED_PRECONDITION, ErrorInfo REQUEST_ID_REUSED")

    # A bad request: rich error details name the offending proto fields.
    details = expect_error(
        lambda: verifications.SendVerification(
            V.SendVerificationRequest(app_id=app.app_id, template_id=template.template_id, phone_number="12"),
            timeout=TIMEOUT,
        ),
        grpc.StatusCode.INVALID_ARGUMENT,
    )
    info, bad = details["ErrorInfo"], details["BadRequest"]
    assert (info.domain, info.reason) == ("itniotech.com", "INVALID_REQUEST"), info
    fields = [v.field for v in bad.field_violations]
    assert fields == ["phone_number"], fields
    assert all(v.description for v in bad.field_violations), bad
    ok("SendVerification with a bad phone -> INVALID_ARGUMENT, BadRequest[phone_number], ErrorInfo INVALID_REQUEST")
    details = expect_error(
        lambda: apps.CreateApp(apps_pb2.CreateAppRequest(name="ab", code_expiry_minutes=61), timeout=TIMEOUT),
        grpc.StatusCode.INVALID_ARGUMENT,
    )
    fields = sorted(v.field for v in details["BadRequest"].field_violations)
    assert fields == ["code_expiry_minutes", "name"], fields
    ok("CreateApp with two bad fields -> BadRequest names both: code_expiry_minutes, name")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "localhost:50051")
