// trivial.js: the trivial job in Node.js: fetch the secret, connect,
// SELECT 1, print the result as JSON.
"use strict";

const { connect } = require("./common");

async function main() {
  const client = await connect("bench-node/trivial");
  const res = await client.query("SELECT 1 AS one");
  await client.end();
  console.log(JSON.stringify({ one: res.rows[0].one }));
}

main().catch((err) => {
  console.error(err.message);
  process.exitCode = 1;
});
