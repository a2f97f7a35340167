// node-postgres (pg) calls printed as JSON, to compare pgcached with PostgreSQL.
// Usage: node node_pg_check.js HOST PORT
'use strict';
const { Client } = require('pg');

const [host, port] = [process.argv[2], Number(process.argv[3])];

function client(user = 'postgres', password = undefined) {
  return new Client({ host, port, user, password, database: 'app', ssl: false });
}

function jsonable(value) {
  if (Buffer.isBuffer(value)) return 'bytes:' + value.toString('hex');
  if (value instanceof Date) return 'date:' + value.toISOString();
  if (Array.isArray(value)) return value.map(jsonable);
  if (value && typeof value === 'object') {
    const out = {};
    for (const key of Object.keys(value).sort()) out[key] = jsonable(value[key]);
    return out;
  }
  if (typeof value === 'number' && !Number.isFinite(value)) return 'number:' + String(value);
  return value;
}

const TYPES = `SELECT 1::int2 AS a, 2::int4 AS b, 3::int8 AS c, 1.5::float4 AS d, 2.25::float8 AS e,
  12345.678::numeric AS f, true AS g, 'text é ✓' AS h, NULL::text AS i, '\\x00ff10'::bytea AS j,
  '2024-02-29 12:34:56+02'::timestamptz AS k, '2024-02-29'::date AS l, '1 day 02:00:00'::interval AS m,
  '2e3b1c4a-9b0f-4e8e-8b1a-1c2d3e4f5a6b'::uuid AS n, '{"a": [1, 2]}'::jsonb AS o,
  ARRAY[1, 2, NULL]::int[] AS p`;

async function main() {
  const out = {};
  const c = client();
  await c.connect();
  // Simple protocol (no parameters), then extended (parameters), then a named statement.
  for (let round = 0; round < 3; round++) {
    out[`types_simple_${round}`] = jsonable((await c.query(TYPES)).rows);
    out[`types_extended_${round}`] = jsonable(
      (await c.query(TYPES + ', $1::text AS q, $2::int AS r', ['param ✓', 42])).rows);
    out[`named_${round}`] = jsonable((await c.query({
      name: 'by_number',
      text: 'SELECT $1::int * 2 AS doubled, $2::text AS label',
      values: [round, `v${round}`],
    })).rows);
  }
  const errors = [];
  for (const sql of ['SELECT * FROM no_such_table', 'SELECT 1/0', 'SELEC 1']) {
    try {
      await c.query(sql);
      errors.push(null);
    } catch (e) {
      errors.push([e.code, e.message]);
    }
  }
  out.errors = errors;
  out.after_errors = (await c.query("SELECT 'alive' AS v")).rows[0].v;

  // LISTEN/NOTIFY.
  const listener = client();
  await listener.connect();
  await listener.query('LISTEN node_channel');
  const received = new Promise((resolve) => listener.on('notification', (n) => resolve([n.channel, n.payload])));
  await c.query("NOTIFY node_channel, 'node payload'");
  let timer;
  const timeout = new Promise((r) => { timer = setTimeout(() => r('timeout'), 10000); });
  out.notify = await Promise.race([received, timeout]);
  clearTimeout(timer);
  await listener.end();
  await c.end();

  // Authentication methods.
  const auth = {};
  for (const [user, password] of [['trust_user', undefined], ['md5_user', 'md5_secret'],
    ['scram_user', 'scram_secret'], ['md5_user', 'wrong'], ['scram_user', 'wrong']]) {
    const a = client(user, password);
    try {
      await a.connect();
      auth[`${user}:${password}`] = (await a.query('SELECT current_user AS u')).rows[0].u;
      await a.end();
    } catch (e) {
      auth[`${user}:${password}`] = ['refused', e.code];
    }
  }
  out.auth = auth;
  process.stdout.write(JSON.stringify(out, null, 1) + '\n');
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
