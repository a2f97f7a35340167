// Logs in with TLS (node-postgres) as each given role and prints, as JSON, the role the server
// reports or the SQLSTATE of the refusal.
// Usage: node tls_login.js HOST PORT USER:PASSWORD...
'use strict';
const { Client } = require('pg');

const [host, port] = [process.argv[2], Number(process.argv[3])];
const logins = process.argv.slice(4).map((pair) => {
  const at = pair.indexOf(':');
  return [pair.slice(0, at), pair.slice(at + 1)];
});

async function login(user, password) {
  const client = new Client({
    host, port, user, password, database: 'app',
    ssl: { rejectUnauthorized: false },
    connectionTimeoutMillis: 10000,
  });
  try {
    await client.connect();
  } catch (error) {
    return { sqlstate: error.code || null, message: error.message };
  }
  try {
    const result = await client.query('SELECT current_user AS u');
    return { user: result.rows[0].u, client_tls: client.connection.stream.encrypted === true };
  } finally {
    await client.end();
  }
}

(async () => {
  const results = {};
  for (const [user, password] of logins) {
    results[`${user}:${password}`] = await login(user, password);
  }
  const sorted = {};
  for (const key of Object.keys(results).sort()) sorted[key] = results[key];
  console.log(JSON.stringify(sorted));
})().catch((error) => {
  console.error(error);
  process.exit(1);
});
