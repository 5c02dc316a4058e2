// Drives the real jsforce client against a live Keel server for tests/bulk/test_jsforce.py.
// Reads {step, instanceUrl, accessToken, records, prefix, qtyBelow} as JSON on stdin, runs one step and prints
// {bulkOps, results} as JSON: the Bulk API 1.0 jobs jsforce created and the results jsforce reports.
//   insert:  conn.bulk.load('Item__c', 'insert', records)
//   update:  Query#update of the prefix's rows with Qty__c < qtyBelow (jsforce goes bulk over 200 records)
//   destroy: Query#destroy of the rows the update step set to Qty__c = 77
'use strict';
const jsforce = require('jsforce');

async function readStdin() {
  const chunks = [];
  for await (const chunk of process.stdin) chunks.push(chunk);
  return JSON.parse(Buffer.concat(chunks).toString('utf8'));
}

async function main() {
  const input = await readStdin();
  const conn = new jsforce.Connection({
    instanceUrl: input.instanceUrl,
    accessToken: input.accessToken,
    version: '59.0',
  });
  conn.bulk.pollInterval = 100;
  conn.bulk.pollTimeout = 60000;
  const bulkOps = [];
  const createJob = conn.bulk.createJob.bind(conn.bulk);
  conn.bulk.createJob = (type, operation, options) => {
    bulkOps.push(`${operation} ${type}`);
    return createJob(type, operation, options);
  };
  // jsforce 3 defaults: bulkThreshold 200 and bulkApiVersion 1; set explicitly so the test means what it says.
  const viaBulk1 = { bulkThreshold: 200, bulkApiVersion: 1 };
  const items = conn.sobject('Item__c');
  let results;
  if (input.step === 'insert') {
    results = await conn.bulk.load('Item__c', 'insert', input.records);
  } else if (input.step === 'update') {
    results = await items
      .find({ Code__c: { $like: `${input.prefix}%` }, Qty__c: { $lt: input.qtyBelow } }, ['Id', 'Name'])
      .update({ Note__c: 'jsforce ${Name}', Qty__c: 77 }, viaBulk1);
  } else if (input.step === 'destroy') {
    results = await items.find({ Code__c: { $like: `${input.prefix}%` }, Qty__c: 77 }, ['Id']).destroy(viaBulk1);
  } else {
    throw new Error(`unknown step ${input.step}`);
  }
  process.stdout.write(JSON.stringify({ bulkOps, results }));
}

main().catch((err) => {
  process.stderr.write(`${err && err.stack ? err.stack : err}\n`);
  process.exit(1);
});
