// Sends a code to a sandbox test number and checks it: the smallest useful client.
//
//   npm ci        # in this repository: the pinned @grpc/grpc-js and @grpc/proto-loader, lock untouched
//   ITNIO_OTP_GRPC_ADDR=localhost:50051 node examples/node/send_and_check.js
//
// In your own project, `npm install @grpc/grpc-js @grpc/proto-loader` adds them to its package.json.
//
// The .proto files are loaded at run time; point PROTO_DIR at your copy of this repo's proto/.
'use strict';

const path = require('node:path');
const { promisify } = require('node:util');
const grpc = require('@grpc/grpc-js');
const protoLoader = require('@grpc/proto-loader');

const PROTO_DIR = process.env.PROTO_DIR || path.join(__dirname, '..', '..', 'proto');
const ADDR = process.env.ITNIO_OTP_GRPC_ADDR || 'localhost:50051';

const definition = protoLoader.loadSync(
  ['itnio/otp/v1/apps.proto', 'itnio/otp/v1/templates.proto', 'itnio/otp/v1/verifications.proto'],
  { keepCase: true, longs: String, enums: String, defaults: true, oneofs: true, includeDirs: [PROTO_DIR] },
);
const v1 = grpc.loadPackageDefinition(definition).itnio.otp.v1;

// Promise-returning versions of a client's unary methods, with a 10 s deadline.
function promised(Client) {
  const client = new Client(ADDR, grpc.credentials.createInsecure());
  return (method, request) =>
    promisify(client[method].bind(client))(request, { deadline: Date.now() + 10_000 });
}

async function main() {
  const suffix = Date.now() % 100_000_000;
  const apps = promised(v1.AppService);
  const templates = promised(v1.TemplateService);
  const verifications = promised(v1.VerificationService);

  // An app holds code expiry and send limits; a template shapes the code and the message.
  const { app } = await apps('CreateApp', { name: `js-app-${suffix}` });
  const { template } = await templates('CreateTemplate', {
    app_id: app.app_id, name: `js-tpl-${suffix}`, text: 'Your code is ##code##', code_length: 4,
  });

  // In sandbox mode, numbers starting with 999 are test numbers; a 4-digit numeric code is "1234".
  const sent = await verifications('SendVerification', {
    app_id: app.app_id, template_id: template.template_id, phone_number: '+999 00 1234 5678',
  });
  console.log(`sent verification ${sent.verification_id} to ${sent.phone_number}`);

  const checked = await verifications('CheckVerification', { verification_id: sent.verification_id, code: '1234' });
  // A wrong or expired code is not an error: it is a match state.
  console.log(`match state: ${checked.match_state}`);
  process.exit(0); // the clients keep their channels open otherwise
}

main().catch((err) => {
  console.error(`${err.code ?? ''} ${err.details ?? err.stack}`);
  process.exit(1);
});
