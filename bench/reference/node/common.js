// common.js: how the Node.js reference jobs get their connection, written
// as such jobs are written today: @aws-sdk/client-secrets-manager fetches
// the RDS secret, pg connects with its fields.
//
// The modules come from bench/node/node_modules (NODE_PATH). The SDK
// reads AWS_ENDPOINT_URL, the region and the credentials from the
// environment itself. BENCH_SECRET_ID names the secret (default bench/db).
"use strict";

const {
  SecretsManagerClient,
  GetSecretValueCommand,
} = require("@aws-sdk/client-secrets-manager");
const { Client } = require("pg");

async function connect(applicationName) {
  const sm = new SecretsManagerClient({});
  const answer = await sm.send(new GetSecretValueCommand({
    SecretId: process.env.BENCH_SECRET_ID || "bench/db",
  }));
  sm.destroy();
  const secret = JSON.parse(answer.SecretString);
  const client = new Client({
    host: secret.host,
    port: Number(secret.port),
    user: secret.username,
    password: secret.password,
    database: secret.dbname || "postgres",
    application_name: applicationName,
  });
  await client.connect();
  return client;
}

module.exports = { connect };
