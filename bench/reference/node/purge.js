// purge.js: the batched purge in Node.js: delete bench_events rows past
// the retention window, each batch its own committed statement, until a
// batch deletes nothing. Prints the counts as JSON.
"use strict";

const { connect } = require("./common");

const PURGE = `
DELETE FROM bench_events
 WHERE id IN (SELECT id FROM bench_events
               WHERE created_at < now() - $1::interval
               ORDER BY id
               LIMIT $2)
`;

async function main() {
  const retention = process.argv[2] || "90 days";
  const batch = Number(process.argv[3] || 5000);
  const client = await connect("bench-node/purge");
  let deleted = 0;
  let batches = 0;
  for (;;) {
    const res = await client.query(PURGE, [retention, batch]);
    batches += 1;
    deleted += res.rowCount;
    if (res.rowCount === 0) break;
  }
  await client.end();
  console.log(JSON.stringify({ batches, deleted, done: true }));
}

main().catch((err) => {
  console.error(err.message);
  process.exitCode = 1;
});
