/**
 * Validate objects against a CRD's openAPIV3Schema the way the Kubernetes API server does
 * (as far as JSON Schema can), from the structure-only fixtures scripts/crd-schema.ts writes.
 *
 * Kubernetes differences made explicit:
 * - x-kubernetes-int-or-string: an integer or a string;
 * - x-kubernetes-list-type: set: items are unique;
 * - an object schema with properties and no additionalProperties rejects unknown fields
 *   (kubectl's default field validation, Strict, does the same; the server would prune them);
 * - formats the API server checks (cidr, ipv4, ipv6, date-time) are checked like Go's parsers;
 *   the others (int32, float, idn-hostname, ...) are annotations only, as there.
 */
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import ipaddr from 'ipaddr.js';
import { Ajv, type ValidateFunction } from 'ajv';

type Schema = Record<string, unknown>;

export interface CrdFixture {
  source: { repository: string; path: string; commit: string; ref?: string };
  group: string;
  kind: string;
  scope: 'Namespaced' | 'Cluster';
  versions: Record<string, { storage: boolean; schema: Schema }>;
}

export const CRD_DIR = path.join(path.dirname(fileURLToPath(import.meta.url)), '..', 'unit', 'fixtures', 'crd');

export function loadCrd(file: string): CrdFixture {
  return JSON.parse(readFileSync(path.join(CRD_DIR, file), 'utf8')) as CrdFixture;
}

/** Pure: the fixture's schema with Kubernetes' own rules spelled as JSON Schema. */
export function kubernetesSchema(node: unknown): unknown {
  if (Array.isArray(node)) return node.map(kubernetesSchema);
  if (node === null || typeof node !== 'object') return node;
  const s = node as Schema;
  const out: Schema = {};
  for (const [k, v] of Object.entries(s)) {
    if (k === 'properties') out[k] = Object.fromEntries(Object.entries(v as Schema).map(([n, c]) => [n, kubernetesSchema(c)]));
    else if (k === 'enum' || k === 'required') out[k] = v;
    else if (k.startsWith('x-kubernetes-') || k === 'nullable') continue;
    else out[k] = kubernetesSchema(v);
  }
  if (s['x-kubernetes-int-or-string'] === true && s.type === undefined && s.anyOf === undefined) out.anyOf = [{ type: 'integer' }, { type: 'string' }];
  if (s['x-kubernetes-list-type'] === 'set') out.uniqueItems = true;
  if (s.type === 'object' && s.properties !== undefined && s.additionalProperties === undefined && s['x-kubernetes-preserve-unknown-fields'] !== true) {
    out.additionalProperties = false;
  }
  return out;
}

const isCidr = (v: string) => {
  // Go's net.ParseCIDR: an address and a prefix length, nothing else
  if (!/^[0-9a-fA-F.:]+\/[0-9]{1,3}$/.test(v)) return false;
  try {
    ipaddr.parseCIDR(v);
    return true;
  } catch {
    return false;
  }
};

export function crdValidator(file: string, version: string): ValidateFunction {
  const crd = loadCrd(file);
  const v = crd.versions[version];
  if (!v) throw new Error(`${file}: no version ${version} (has ${Object.keys(crd.versions).join(', ')})`);
  const ajv = new Ajv({ allErrors: true, strict: false, unicodeRegExp: false });
  ajv.addFormat('cidr', isCidr);
  ajv.addFormat('ipv4', (x: string) => ipaddr.IPv4.isValidFourPartDecimal(x));
  ajv.addFormat('ipv6', (x: string) => ipaddr.IPv6.isValid(x));
  ajv.addFormat('date-time', /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})$/);
  for (const f of ['int32', 'int64', 'float', 'double', 'byte', 'idn-hostname', 'hostname', 'uri']) ajv.addFormat(f, true);
  const root = kubernetesSchema(v.schema) as Schema;
  // every object may carry apiVersion, kind and metadata, whether the CRD lists them or not
  root.properties = { apiVersion: { type: 'string' }, kind: { type: 'string' }, metadata: { type: 'object' }, ...(root.properties as Schema) };
  return ajv.compile(root);
}
