"""Caller tokens, TLS and mTLS from Python grpcio, with stubs generated from proto/.

Usage: python tests/interop/secure.py TLS_ADDR MTLS_ADDR CERT_DIR TOKEN

TLS_ADDR serves TLS with a callers file in which TOKEN may call AppService only; MTLS_ADDR
requires a client certificate, and CERT_DIR/client.pem names the caller. Prints `ok - ...`.
"""

import pathlib
import sys
import uuid

import grpc
from grpc_status import rpc_status
from google.rpc import error_details_pb2

import gen_stubs

sys.path.insert(0, str(gen_stubs.generate()))

from itnio.otp.v1 import apps_pb2, apps_pb2_grpc, flows_pb2, flows_pb2_grpc  # noqa: E402

TLS_ADDR, MTLS_ADDR, CERTS, TOKEN = sys.argv[1], sys.argv[2], pathlib.Path(sys.argv[3]), sys.argv[4]
TIMEOUT = 10


def ok(what):
    print(f"ok - python: {what}", flush=True)


def reason(err):
    status = rpc_status.from_call(err)
    assert status is not None, f"{err.code()} carries no details"
    for detail in status.details:
        if detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
            info = error_details_pb2.ErrorInfo()
            detail.Unpack(info)
            return info.reason
    raise AssertionError(f"no ErrorInfo in {err}")


def create_app(channel, metadata=()):
    stub = apps_pb2_grpc.AppServiceStub(channel)
    request = apps_pb2.CreateAppRequest(name=f"py-{uuid.uuid4().hex[:8]}")
    return stub.CreateApp(request, timeout=TIMEOUT, metadata=metadata)


def refused(call, code):
    try:
        call()
    except grpc.RpcError as err:
        assert err.code() == code, (err.code(), err.details())
        return err
    raise AssertionError(f"expected {code}, the call succeeded")


ca = (CERTS / "ca.pem").read_bytes()
bearer = (("authorization", f"Bearer {TOKEN}"),)

with grpc.secure_channel(TLS_ADDR, grpc.ssl_channel_credentials(root_certificates=ca)) as tls:
    app = create_app(tls, bearer).app
    assert app.app_id, app
    ok("TLS with a bearer token: CreateApp answers")
    err = refused(lambda: create_app(tls), grpc.StatusCode.UNAUTHENTICATED)
    assert reason(err) == "MISSING_CREDENTIALS", reason(err)
    err = refused(lambda: create_app(tls, (("authorization", "Bearer wrong"),)), grpc.StatusCode.UNAUTHENTICATED)
    assert reason(err) == "INVALID_TOKEN", reason(err)
    assert "wrong" not in err.details()
    ok("no token and a wrong token: UNAUTHENTICATED with ErrorInfo MISSING_CREDENTIALS / INVALID_TOKEN")
    flows = flows_pb2_grpc.FlowServiceStub(tls)
    err = refused(lambda: flows.ListFlows(flows_pb2.ListFlowsRequest(), timeout=TIMEOUT, metadata=bearer), grpc.StatusCode.PERMISSION_DENIED)
    assert reason(err) == "METHOD_NOT_ALLOWED", reason(err)
    ok("a method outside allow: PERMISSION_DENIED with ErrorInfo METHOD_NOT_ALLOWED")

identity = grpc.ssl_channel_credentials(
    root_certificates=ca,
    private_key=(CERTS / "client.key").read_bytes(),
    certificate_chain=(CERTS / "client.pem").read_bytes(),
)
with grpc.secure_channel(MTLS_ADDR, identity) as mtls:
    assert create_app(mtls).app.app_id
    ok("mTLS: the client certificate names the caller, no token needed")
with grpc.secure_channel(MTLS_ADDR, grpc.ssl_channel_credentials(root_certificates=ca)) as anonymous:
    refused(lambda: create_app(anonymous), grpc.StatusCode.UNAVAILABLE)
    ok("mTLS without a client certificate: the handshake fails (UNAVAILABLE)")
