// rows.js: stream bench_rows with node-postgres and touch every value.
//
// A pg.Query with a "row" listener and no callback hands over each row as
// it is parsed and keeps none, the streaming way that pg itself offers
// (pg-cursor and pg-query-stream are extra packages). pg leaves numeric as
// a string and turns timestamptz into a Date. Connects with libpq-style
// PG* environment variables, which pg reads. Prints the same checksum as
// bench/jobs/rows.lua.
"use strict";

const { Client, Query } = require("pg");

async function main() {
  const client = new Client({ application_name: "bench-node/rows" });
  await client.connect();
  const sums = {
    rows: 0, id_sum: 0n, amount_chars: 0, text_chars: 0, stamps: 0, nulls: 0,
  };
  await new Promise((resolve, reject) => {
    const query = new Query(
      "SELECT id, amount, customer, created_at, note FROM bench_rows");
    query.on("row", (row) => {
      sums.rows += 1;
      sums.id_sum += BigInt(row.id);
      sums.amount_chars += row.amount.length;
      sums.text_chars += row.customer.length;
      if (row.created_at !== null) sums.stamps += 1;
      if (row.note === null) sums.nulls += 1;
      else sums.text_chars += row.note.length;
    });
    query.on("end", resolve);
    query.on("error", reject);
    client.query(query);
  });
  await client.end();
  console.log(JSON.stringify({ ...sums, id_sum: Number(sums.id_sum) }));
}

main().catch((err) => {
  console.error(err.message);
  process.exitCode = 1;
});
