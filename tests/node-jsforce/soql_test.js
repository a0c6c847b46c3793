// jsforce against convmsg's Salesforce REST bridge, as a Salesforce user runs it.
//
// Reads a plan from stdin ({"query": [SOQL, ...], "queryAll": [SOQL, ...]}), runs each
// with autoFetch (jsforce follows nextRecordsUrl until done) — queryAll with scanAll —
// and prints what jsforce returned as JSON. The Rust test
// (tests/api/salesforce_clients.rs) compares it with the database.
//
//   NODE_EXTRA_CA_CERTS=ca.pem node soql_test.js https://127.0.0.1:PORT cm_... < plan.json
'use strict';

const fs = require('fs');
const jsforce = require('jsforce');

async function main() {
  const [instanceUrl, accessToken] = process.argv.slice(2);
  if (!instanceUrl || !accessToken) {
    throw new Error('usage: node soql_test.js INSTANCE_URL TOKEN < plan.json');
  }
  const plan = JSON.parse(fs.readFileSync(0, 'utf8'));
  const conn = new jsforce.Connection({ instanceUrl, accessToken, version: '65.0' });
  const run = (soql, scanAll) => conn.query(soql, { autoFetch: true, maxFetch: 1000000, scanAll });
  const out = { query: [], queryAll: [] };
  for (const soql of plan.query) {
    out.query.push(await run(soql, false));
  }
  for (const soql of plan.queryAll) {
    out.queryAll.push(await run(soql, true));
  }
  process.stdout.write(JSON.stringify(out));
}

main().catch((error) => {
  console.error(error);
  process.exit(1);
});
