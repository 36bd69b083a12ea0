// The whole OTP journey from Node, loading proto/ at run time with @grpc/proto-loader.
//
// Usage: node tests/interop/journey.js HOST:PORT   (the server must run in sandbox mode)
//
// Prints one `ok - ...` line per check (run.sh counts them); exits non-zero on a failed assertion.
'use strict';

const assert = require('node:assert/strict');
const crypto = require('node:crypto');
const path = require('node:path');
const grpc = require('@grpc/grpc-js');
const protoLoader = require('@grpc/proto-loader');
const protobuf = require('protobufjs');

const REPO = path.resolve(__dirname, '..', '..');
const ADDR = process.argv[2] || 'localhost:50051';
const PHONE = '+999 00 1234 5678'; // sandbox test number: delivery succeeds, code is "1234"
const PHONE_DIGITS = '9990012345678';
const TIMEOUT_MS = 10_000;

const definition = protoLoader.loadSync(
  ['apps', 'templates', 'flows', 'verifications', 'records'].map((f) => `itnio/otp/v1/${f}.proto`),
  { keepCase: true, longs: String, enums: String, defaults: true, oneofs: true, includeDirs: [path.join(REPO, 'proto')] },
);
const v1 = grpc.loadPackageDefinition(definition).itnio.otp.v1;

// google.rpc.Status and its details, to decode the grpc-status-details-bin trailer.
const rpc = new protobuf.Root().loadSync(['status.proto', 'error_details.proto'].map((f) => path.join(__dirname, 'protos/google/rpc', f)), { keepCase: true });
const Status = rpc.lookupType('google.rpc.Status');

function ok(what) {
  console.log(`ok - node: ${what}`);
}

// Wraps a unary method as `(request) => Promise<response>`, with a deadline.
function unary(client, method) {
  return (request) =>
    new Promise((resolve, reject) =>
      client[method](request, { deadline: Date.now() + TIMEOUT_MS }, (err, res) => (err ? reject(err) : resolve(res))),
    );
}

// Unpacks google.rpc.Status details into { ErrorInfo, BadRequest, ... }.
function errorDetails(err) {
  const [bin] = err.metadata.get('grpc-status-details-bin');
  assert.ok(bin, `${err.code} carries no grpc-status-details-bin`);
  const status = Status.decode(bin);
  assert.equal(status.code, err.code);
  const found = {};
  for (const any of status.details) {
    const name = any.type_url.split('/').pop();
    found[name.replace('google.rpc.', '')] = rpc.lookupType(name).decode(any.value);
  }
  return found;
}

async function expectError(promise, code) {
  try {
    await promise;
  } catch (err) {
    assert.equal(err.code, code, `expected ${code}, got ${err.code}: ${err.details}`);
    return errorDetails(err);
  }
  assert.fail(`expected code ${code}, call succeeded`);
}

// Reads a WatchRecord stream to its end (status OK); returns the messages.
function watch(records, request) {
  return new Promise((resolve, reject) => {
    const messages = [];
    const call = records.WatchRecord(request, { deadline: Date.now() + 15_000 });
    call.on('data', (m) => messages.push(m));
    call.on('error', reject);
    call.on('status', (s) => {
      if (s.code !== grpc.status.OK) return;
      try {
        assert.ok(messages.length > 0, 'watch returned no message');
        assert.deepEqual(messages[0].changes.slice(0, 1), ['RECORD_CHANGE_INITIAL']);
        assert.equal(messages.at(-1).final, true, 'last message is not final');
        assert.ok(messages.slice(0, -1).every((m) => !m.final), 'final before the last message');
        resolve(messages);
      } catch (e) {
        reject(e);
      }
    });
  });
}

async function main() {
  const run = crypto.randomBytes(4).toString('hex');
  const creds = grpc.credentials.createInsecure();
  const apps = new v1.AppService(ADDR, creds);
  const templates = new v1.TemplateService(ADDR, creds);
  const flows = new v1.FlowService(ADDR, creds);
  const verifications = new v1.VerificationService(ADDR, creds);
  const records = new v1.RecordService(ADDR, creds);

  const name = `js-app-${run}`;
  const { app } = await unary(apps, 'CreateApp')({ name, code_expiry_minutes: 1 });
  assert.ok(app.app_id);
  assert.equal(app.name, name);
  assert.equal(app.code_expiry_minutes, 1);
  ok(`CreateApp -> app_id ${app.app_id}`);
  const got = (await unary(apps, 'GetApp')({ app_id: app.app_id })).app;
  assert.equal(got.name, name);
  assert.ok(Number(got.create_time.seconds) > 0);
  ok('GetApp returns the app');

  let details = await expectError(unary(apps, 'CreateApp')({ name }), grpc.status.ALREADY_EXISTS);
  assert.equal(details.ErrorInfo.domain, 'itniotech.com');
  assert.equal(details.ErrorInfo.reason, 'DATA_EXISTS');
  ok('CreateApp with a taken name -> ALREADY_EXISTS, ErrorInfo DATA_EXISTS');

  const { template } = await unary(templates, 'CreateTemplate')({
    app_id: app.app_id, name: `js-tpl-${run}`, text: 'Your code is ##code##', code_length: 4,
  });
  assert.ok(template.template_id);
  assert.equal(template.app_id, app.app_id);
  assert.equal(template.code_length, 4);
  ok(`CreateTemplate -> template_id ${template.template_id}`);

  const node = { waiting_time_seconds: 30, trigger: 'FLOW_TRIGGER_SEND_FAILED', channel: 'CHANNEL_CALL', channel_cut: false };
  const { flow } = await unary(flows, 'CreateFlow')({ name: `js-flow-${run}`, nodes: [node] });
  assert.ok(flow.flow_id);
  assert.deepEqual(flow.nodes, [node]);
  assert.deepEqual((await unary(flows, 'GetFlow')({ flow_id: flow.flow_id })).flow, flow);
  ok(`CreateFlow + GetFlow -> flow_id ${flow.flow_id}`);

  const orderId = `js-order-${run}`;
  const sent = await unary(verifications, 'SendVerification')({
    app_id: app.app_id, template_id: template.template_id, flow_id: flow.flow_id, phone_number: PHONE, order_id: orderId,
  });
  assert.match(sent.verification_id, /^\d{20}$/);
  assert.equal(sent.phone_number, PHONE_DIGITS);
  assert.equal(sent.channel, 'CHANNEL_SMS');
  ok(`SendVerification -> verification_id ${sent.verification_id}`);

  const checkCode = unary(verifications, 'CheckVerification');
  let check = await checkCode({ verification_id: sent.verification_id, code: '0000' });
  assert.equal(check.match_state, 'MATCH_STATE_WRONG_CODE');
  ok('CheckVerification with a wrong code -> MATCH_STATE_WRONG_CODE (not an error)');
  check = await checkCode({ verification_id: sent.verification_id, code: '1234' });
  assert.equal(check.match_state, 'MATCH_STATE_MATCHED');
  assert.equal(check.verification_id, sent.verification_id);
  assert.equal(check.phone_number, PHONE_DIGITS);
  ok('CheckVerification with 1234 -> MATCH_STATE_MATCHED');
  check = await checkCode({ verification_id: sent.verification_id, code: '1234' });
  assert.equal(check.match_state, 'MATCH_STATE_ALREADY_USED');
  ok('CheckVerification again -> MATCH_STATE_ALREADY_USED');

  let { record } = await unary(records, 'GetRecord')({ verification_id: sent.verification_id });
  assert.equal(record.verification_id, sent.verification_id);
  assert.equal(record.outcome.match_state, 'MATCH_STATE_MATCHED');
  assert.equal(record.outcome.order_id, orderId);
  assert.equal(record.outcome.phone_number, PHONE_DIGITS);
  assert.ok(Number(record.outcome.verified_time.seconds) > 0);
  assert.ok(record.sms_attempts.length >= 1);
  ok('GetRecord by verification_id -> matched, with order_id and an SMS attempt');

  ({ record } = await unary(records, 'GetOrderRecord')({ app_id: app.app_id, order_id: orderId }));
  assert.equal(record.order_id, orderId);
  assert.equal(record.flow_id, flow.flow_id);
  assert.equal(record.outcome.match_state, 'MATCH_STATE_MATCHED');
  ok('GetOrderRecord by order_id -> same verification, with the flow_id');

  let messages = await watch(records, { verification_id: sent.verification_id });
  assert.equal(messages.at(-1).record.outcome.match_state, 'MATCH_STATE_MATCHED');
  ok(`WatchRecord (verification_id) of a matched verification ends with OK after ${messages.length} message(s)`);
  messages = await watch(records, { order: { app_id: app.app_id, order_id: orderId } });
  assert.equal(messages.at(-1).record.order_id, orderId);
  ok(`WatchRecord (order) ends with OK after ${messages.length} message(s)`);

  // A fresh, never-checked verification: its watch must end on its own (code expiry).
  const fresh = await unary(verifications, 'SendVerification')({
    app_id: app.app_id, template_id: template.template_id, phone_number: PHONE,
  });
  const started = Date.now();
  messages = await watch(records, { verification_id: fresh.verification_id });
  const changes = messages.flatMap((m) => m.changes);
  assert.ok(messages.length >= 2, String(changes));
  assert.notEqual(messages.at(-1).record.outcome.match_state, 'MATCH_STATE_MATCHED');
  ok(`WatchRecord of an unchecked verification ends on its own in ${(Date.now() - started) / 1000}s: ${changes}`);

  // A send retried with one request_id (AIP-155) is sent once: the retry replays the answer.
  const retried = { app_id: app.app_id, template_id: template.template_id, phone_number: PHONE, request_id: crypto.randomUUID() };
  const first = await unary(verifications, 'SendVerification')(retried);
  const again = await unary(verifications, 'SendVerification')(retried);
  assert.deepEqual(again, first);
  assert.ok(first.order_id, 'the service generates an order id');
  ok(`SendVerification retried with one request_id -> replayed (same verification_id, order_id ${first.order_id})`);
  details = await expectError(
    unary(verifications, 'SendVerification')({ ...retried, channel: 'CHANNEL_CALL' }),
    grpc.status.FAILED_PRECONDITION,
  );
  assert.equal(details.ErrorInfo.reason, 'REQUEST_ID_REUSED');
  ok('the same request_id for a different request -> FAILED_PRECONDITION, ErrorInfo REQUEST_ID_REUSED');

  details = await expectError(
    unary(verifications, 'SendVerification')({ app_id: app.app_id, template_id: template.template_id, phone_number: '12' }),
    grpc.status.INVALID_ARGUMENT,
  );
  assert.equal(details.ErrorInfo.domain, 'itniotech.com');
  assert.equal(details.ErrorInfo.reason, 'INVALID_REQUEST');
  assert.deepEqual(details.BadRequest.field_violations.map((v) => v.field), ['phone_number']);
  assert.ok(details.BadRequest.field_violations.every((v) => v.description));
  ok('SendVerification with a bad phone -> INVALID_ARGUMENT, BadRequest[phone_number], ErrorInfo INVALID_REQUEST');
  details = await expectError(unary(apps, 'CreateApp')({ name: 'ab', code_expiry_minutes: 61 }), grpc.status.INVALID_ARGUMENT);
  assert.deepEqual(details.BadRequest.field_violations.map((v) => v.field).sort(), ['code_expiry_minutes', 'name']);
  ok('CreateApp with two bad fields -> BadRequest names both: code_expiry_minutes, name');

  for (const c of [apps, templates, flows, verifications, records]) c.close();
}

main().catch((err) => {
  console.error(`not ok - node: ${err.stack || err}`);
  process.exit(1);
});
