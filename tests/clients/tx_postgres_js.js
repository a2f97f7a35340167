// postgres.js (npm `postgres`) with default settings running the workload of tx_workload.py:
// a pool (up to 10 connections), every query a named prepared statement, each unit of work in
// `sql.begin(...)` (BEGIN on a connection reserved for the callback, COMMIT when it resolves,
// ROLLBACK when it throws). Connection B is the pool outside A's transaction (its own
// connection while A holds one), C a second pool. Prints the transcript as JSON, keys sorted.
// Usage: node tx_postgres_js.js HOST PORT reads|writes|all TABLE
'use strict';
const postgres = require('postgres');

const ITERATIONS = 200;
const READ_KEYS = [1, 2, 3];
const KEY = 2;
const COMMITTED = 'two-committed';
const ROLLED_BACK = 'two-rolled-back';

const [host, port, phase, table] = [process.argv[2], Number(process.argv[3]), process.argv[4],
  process.argv[5]];

function pool() {
  return postgres({ host, port, user: 'postgres', database: 'app', ssl: false, connect_timeout: 10 });
}

async function read(sql, key = KEY) {
  const rows = await sql`SELECT v FROM ${sql(table)} WHERE id = ${key}`;
  return rows[0].v;
}

async function unit(sql, key = KEY) {
  return sql.begin((tx) => read(tx, key));
}

async function update(tx, value) {
  return (await tx`UPDATE ${tx(table)} SET v = ${value} WHERE id = ${KEY}`).count;
}

async function reads() {
  const sql = pool();
  const values = [];
  for (let i = 0; i < ITERATIONS; i++) values.push(await unit(sql, READ_KEYS[i % READ_KEYS.length]));
  await sql.end();
  return { reads: values };
}

class Rollback extends Error {}

async function writes() {
  const sql = pool();
  const out = { b_before: [] };
  for (let i = 0; i < 3; i++) out.b_before.push(await unit(sql));
  await sql.begin(async (a) => {
    out.a_before_write = await read(a);
    out.updated = await update(a, COMMITTED);
    out.a_own_write = await read(a);
    out.b_during = await unit(sql);
  });
  out.a_after_commit = await unit(sql);
  out.b_after_commit = await unit(sql);
  try {
    await sql.begin(async (a) => {
      out.rolled_back_updated = await update(a, ROLLED_BACK);
      out.a_own_rollback = await read(a);
      out.b_during_rollback = await unit(sql);
      throw new Rollback();
    });
  } catch (e) {
    if (!(e instanceof Rollback)) throw e;
  }
  out.a_after_rollback = await unit(sql);
  out.b_after_rollback = await unit(sql);
  const fresh = pool();
  out.c_after_rollback = await unit(fresh);
  await fresh.end();
  await sql.end();
  return out;
}

async function main() {
  const out = {};
  if (phase !== 'writes') Object.assign(out, await reads());
  if (phase !== 'reads') Object.assign(out, await writes());
  return out;
}

main().then((out) => {
  const sorted = {};
  for (const key of Object.keys(out).sort()) sorted[key] = out[key];
  console.log(JSON.stringify(sorted));
}).catch((e) => {
  console.error(e);
  process.exit(1);
});
