// gRPC-Web from Node with Connect's gRPC-Web transport (@connectrpc/connect-node), a client
// no one here wrote, over HTTP/1.1 and HTTP/2, with message types read at run time from
// descriptor sets that `buf build` made of proto/ and of the google.rpc error details.
//
// Usage: node tests/interop/grpc_web.js HOST:PORT OTP.binpb RPC.binpb ALLOWED_ORIGIN
//   (the server runs in sandbox mode with CORS_ALLOWED_ORIGINS=ALLOWED_ORIGIN)
//
// Prints one `ok - ...` line per check (run.sh counts them); exits non-zero on a failed assertion.
'use strict';

const assert = require('node:assert/strict');
const fs = require('node:fs');
const { createFileRegistry, fromBinary } = require('@bufbuild/protobuf');
const { FileDescriptorSetSchema } = require('@bufbuild/protobuf/wkt');
const { Code, ConnectError, createClient } = require('@connectrpc/connect');
const { createGrpcWebTransport } = require('@connectrpc/connect-node');

const [ADDR, OTP_SET, RPC_SET, ALLOWED_ORIGIN] = process.argv.slice(2);
assert.ok(ALLOWED_ORIGIN, 'usage: grpc_web.js HOST:PORT OTP.binpb RPC.binpb ALLOWED_ORIGIN');
const TIMEOUT_MS = 10_000;

const registry = createFileRegistry(
  ...[OTP_SET, RPC_SET].map((file) => createFileRegistry(fromBinary(FileDescriptorSetSchema, fs.readFileSync(file)))),
);
const AppService = registry.getService('itnio.otp.v1.AppService');
const BadRequest = registry.getMessage('google.rpc.BadRequest');
const ErrorInfo = registry.getMessage('google.rpc.ErrorInfo');
assert.ok(AppService && BadRequest && ErrorInfo, 'descriptors for AppService and google.rpc details');

function ok(what) {
  console.log(`ok - grpc-web: ${what}`);
}

function client(httpVersion) {
  const transport = createGrpcWebTransport({ baseUrl: `http://${ADDR}`, httpVersion });
  return createClient(AppService, transport);
}

async function expectError(promise) {
  try {
    await promise;
  } catch (err) {
    return ConnectError.from(err);
  }
  assert.fail('the call succeeded');
}

async function unaryRoundTrip(httpVersion) {
  const apps = client(httpVersion);
  const name = `web-${httpVersion.replace('.', '')}-${process.pid}`.slice(0, 32);
  const created = await apps.createApp({ name }, { timeoutMs: TIMEOUT_MS });
  assert.ok(created.app.appId, 'an app id');
  const fetched = await apps.getApp({ appId: created.app.appId }, { timeoutMs: TIMEOUT_MS });
  assert.equal(fetched.app.name, name);
  ok(`CreateApp then GetApp over HTTP/${httpVersion}`);
}

async function errorDetails() {
  const err = await expectError(client('1.1').createApp({ name: 'x' }, { timeoutMs: TIMEOUT_MS }));
  assert.equal(err.code, Code.InvalidArgument, err.message);
  const [bad] = err.findDetails(BadRequest);
  assert.ok(bad, 'a BadRequest detail');
  assert.deepEqual(bad.fieldViolations.map((v) => v.field), ['name']);
  const [info] = err.findDetails(ErrorInfo);
  assert.equal(info.domain, 'itniotech.com');
  assert.equal(info.reason, 'INVALID_REQUEST');
  ok('InvalidArgument carries BadRequest (field name) and ErrorInfo INVALID_REQUEST');

  const missing = await expectError(client('1.1').getApp({ appId: '987654321' }, { timeoutMs: TIMEOUT_MS }));
  assert.equal(missing.code, Code.NotFound, missing.message);
  const [notFound] = missing.findDetails(ErrorInfo);
  assert.equal(notFound.reason, 'DATA_NOT_FOUND');
  ok('an upstream -24 arrives as NotFound with ErrorInfo DATA_NOT_FOUND');
}

async function preflight(origin) {
  return fetch(`http://${ADDR}/itnio.otp.v1.AppService/GetApp`, {
    method: 'OPTIONS',
    headers: {
      origin,
      'access-control-request-method': 'POST',
      'access-control-request-headers': 'content-type,x-grpc-web,authorization',
    },
  });
}

async function cors() {
  const allowed = await preflight(ALLOWED_ORIGIN);
  assert.equal(allowed.headers.get('access-control-allow-origin'), ALLOWED_ORIGIN);
  assert.match(allowed.headers.get('access-control-allow-headers') ?? '', /x-grpc-web/);
  ok(`a preflight from ${ALLOWED_ORIGIN} is allowed`);
  const other = await preflight('https://evil.example');
  assert.equal(other.headers.get('access-control-allow-origin'), null);
  ok('a preflight from another origin is not');
}

(async () => {
  await unaryRoundTrip('1.1');
  await unaryRoundTrip('2');
  await errorDetails();
  await cors();
})().catch((err) => {
  console.error(err);
  process.exit(1);
});
