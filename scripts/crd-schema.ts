/**
 * Reduce a CustomResourceDefinition to the structure of its openAPIV3Schema (no descriptions),
 * as a test fixture the export tests validate every exported object against.
 *
 *   tsx scripts/crd-schema.ts CRD.yaml --repo owner/name --path PATH --commit SHA [--ref TAG] > fixture.json
 *
 * Kept: what decides whether the API server accepts an object (types, required, enums, patterns,
 * formats, bounds, oneOf/anyOf/allOf/not, items, properties, additionalProperties and the
 * x-kubernetes-* markers that change validation). Dropped: descriptions, examples, defaults,
 * printer columns. The source (repository, path, commit) goes into the fixture's header.
 */
import { readFileSync } from 'node:fs';
import { parse } from 'yaml';

const KEEP = new Set([
  'type',
  'required',
  'enum',
  'pattern',
  'format',
  'minimum',
  'maximum',
  'exclusiveMinimum',
  'exclusiveMaximum',
  'minLength',
  'maxLength',
  'minItems',
  'maxItems',
  'minProperties',
  'maxProperties',
  'uniqueItems',
  'nullable',
  'oneOf',
  'anyOf',
  'allOf',
  'not',
  'items',
  'properties',
  'additionalProperties',
  'x-kubernetes-int-or-string',
  'x-kubernetes-preserve-unknown-fields',
  'x-kubernetes-list-type',
  'x-kubernetes-list-map-keys',
  'x-kubernetes-map-type',
  'x-kubernetes-embedded-resource',
  'x-kubernetes-validations',
]);

type Schema = Record<string, unknown>;

/** Pure: the schema with every kept keyword, recursively; property names are data, not keywords. */
export function reduce(node: unknown): unknown {
  if (Array.isArray(node)) return node.map(reduce);
  if (node === null || typeof node !== 'object') return node;
  const out: Schema = {};
  for (const [k, v] of Object.entries(node as Schema)) {
    if (!KEEP.has(k)) continue;
    if (k === 'properties') {
      out[k] = Object.fromEntries(Object.entries(v as Schema).map(([name, s]) => [name, reduce(s)]));
    } else if (k === 'x-kubernetes-validations') {
      // CEL rules: kept without their messages
      out[k] = (v as Schema[]).map((r) => ({ rule: r.rule }));
    } else if (k === 'enum' || k === 'required' || k === 'x-kubernetes-list-map-keys') {
      out[k] = v;
    } else {
      out[k] = reduce(v);
    }
  }
  return out;
}

function main(argv: string[]): void {
  const [file, ...rest] = argv;
  const arg = (name: string) => {
    const i = rest.indexOf(`--${name}`);
    return i >= 0 ? rest[i + 1] : undefined;
  };
  if (!file || !arg('repo') || !arg('path') || !arg('commit')) {
    process.stderr.write('usage: tsx scripts/crd-schema.ts CRD.yaml --repo owner/name --path PATH --commit SHA [--ref TAG]\n');
    process.exit(2);
  }
  const crd = parse(readFileSync(file, 'utf8')) as { kind: string; spec: { group: string; names: { kind: string }; scope: string; versions: { name: string; served: boolean; storage: boolean; schema: { openAPIV3Schema: unknown } }[] } };
  if (crd.kind !== 'CustomResourceDefinition') throw new Error(`${file}: not a CustomResourceDefinition`);
  const versions = crd.spec.versions.filter((v) => v.served);
  const fixture = {
    source: {
      repository: arg('repo'),
      path: arg('path'),
      commit: arg('commit'),
      ...(arg('ref') ? { ref: arg('ref') } : {}),
      generatedBy: 'scripts/crd-schema.ts (structure only: descriptions dropped)',
    },
    group: crd.spec.group,
    kind: crd.spec.names.kind,
    scope: crd.spec.scope,
    versions: Object.fromEntries(versions.map((v) => [v.name, { storage: v.storage, schema: reduce(v.schema.openAPIV3Schema) }])),
  };
  process.stdout.write(`${JSON.stringify(fixture, null, 1)}\n`);
}

if (import.meta.url === `file://${process.argv[1]}`) main(process.argv.slice(2));
