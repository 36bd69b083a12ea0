// Caller tokens, TLS and mTLS from Node grpc-js, loading proto/ at run time.
//
// Usage: node tests/interop/secure.js TLS_ADDR MTLS_ADDR CERT_DIR TOKEN   (see secure.py)
'use strict';

const assert = require('node:assert/strict');
const fs = require('node:fs');
const path = require('node:path');
const grpc = require('@grpc/grpc-js');
const protoLoader = require('@grpc/proto-loader');

const [TLS_ADDR, MTLS_ADDR, CERTS, TOKEN] = process.argv.slice(2);
const REPO = path.resolve(__dirname, '..', '..');
const definition = protoLoader.loadSync(['itnio/otp/v1/apps.proto'], { keepCase: true, includeDirs: [path.join(REPO, 'proto')] });
const v1 = grpc.loadPackageDefinition(definition).itnio.otp.v1;
const ca = fs.readFileSync(path.join(CERTS, 'ca.pem'));

function ok(what) {
  console.log(`ok - node: ${what}`);
}

function createApp(client, token) {
  const metadata = new grpc.Metadata();
  if (token) metadata.set('authorization', `Bearer ${token}`);
  const request = { name: `js-${Math.random().toString(36).slice(2, 10)}` };
  return new Promise((resolve, reject) =>
    client.CreateApp(request, metadata, { deadline: Date.now() + 10_000 }, (err, res) => (err ? reject(err) : resolve(res))),
  );
}

async function main() {
  const tls = new v1.AppService(TLS_ADDR, grpc.credentials.createSsl(ca));
  const reply = await createApp(tls, TOKEN);
  assert.ok(reply.app.app_id);
  ok('TLS with a bearer token: CreateApp answers');
  await assert.rejects(createApp(tls, 'wrong-token'), (err) => err.code === grpc.status.UNAUTHENTICATED && !err.details.includes('wrong-token'));
  await assert.rejects(createApp(tls), (err) => err.code === grpc.status.UNAUTHENTICATED);
  ok('no token and a wrong token: UNAUTHENTICATED');
  tls.close();

  const key = fs.readFileSync(path.join(CERTS, 'client.key'));
  const cert = fs.readFileSync(path.join(CERTS, 'client.pem'));
  const mtls = new v1.AppService(MTLS_ADDR, grpc.credentials.createSsl(ca, key, cert));
  assert.ok((await createApp(mtls)).app.app_id);
  ok('mTLS: the client certificate names the caller, no token needed');
  mtls.close();
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
