import path from 'node:path';
import { loadConfig } from '../config/load.js';
import { UsageError } from '../errors.js';
import { renderAntrea } from '../export/antrea.js';
import { renderCilium } from '../export/cilium.js';
import { buildModel, type Engine } from '../export/model.js';
import { commonNotes, yamlStream, type K8sObject } from '../export/render.js';
import { printable } from '../text.js';
import { VERSION } from '../defaults.js';

export interface ExportOptions {
  config: string;
  to: string;
  namespace: string;
  /** a directory (one file per object) or "-" (stdout) */
  out: string;
  clusterWide: boolean;
  serviceLabel: string;
  projectLabel: string;
}

export interface ExportDeps {
  /** write a file under the out dir, creating it */
  writeText: (file: string, text: string) => Promise<void>;
  readText: (file: string) => Promise<string | null>;
  removeFile: (file: string) => Promise<void>;
  /** file names in a directory ([] when it does not exist) */
  listDir: (dir: string) => Promise<string[]>;
  cwd: string;
  out: (text: string) => void;
  warn: (text: string) => void;
}

/** the first line of every file export writes */
const GENERATED = '# egressfw ';
/** DNS-1123 label, as Kubernetes names namespaces */
const NAMESPACE = /^[a-z0-9](?:[-a-z0-9]{0,61}[a-z0-9])?$/;

/**
 * `egressfw export`: the config as Kubernetes objects for Cilium or Antrea. Reads the config and
 * nothing else (no root, no kernel, no network); writes stdout or files in --out only.
 */
export async function runExport(opts: ExportOptions, deps: ExportDeps): Promise<number> {
  if (opts.to !== 'cilium' && opts.to !== 'antrea') throw new UsageError(`--to must be cilium or antrea, got ${JSON.stringify(printable(opts.to.slice(0, 40)))}`);
  if (!NAMESPACE.test(opts.namespace)) throw new UsageError(`--namespace ${JSON.stringify(printable(opts.namespace.slice(0, 80)))} is not a Kubernetes namespace name (lowercase letters, digits and "-", at most 63)`);
  const engine: Engine = opts.to;
  const config = await loadConfig(opts.config);
  for (const w of config.warnings) deps.warn(`warning: ${printable(opts.config)}: ${printable(w)}`);
  const model = buildModel(config, { service: opts.serviceLabel, project: opts.projectLabel });
  const render = { namespace: opts.namespace, clusterWide: opts.clusterWide };
  const rendered = engine === 'cilium' ? renderCilium(model, render) : renderAntrea(model, render);
  const notes = [...model.notes, ...commonNotes(config), ...rendered.notes];
  const header = [
    `egressfw ${VERSION} export --to ${engine}${opts.clusterWide ? ' --cluster-wide' : ` --namespace ${opts.namespace}`} from ${path.basename(opts.config)}`,
    `pods are selected by ${opts.serviceLabel} (compose service), ${opts.projectLabel} (compose project), any label a containers.assign entry names, and egressfw.policy`,
  ];
  for (const n of notes) deps.warn(`note: ${printable(n)}`);
  if (opts.out === '-') {
    deps.out(yamlStream(rendered.objects, header, notes));
    return 0;
  }
  const dir = path.resolve(deps.cwd, opts.out);
  const files = rendered.objects.map((o: K8sObject) => ({ file: path.join(dir, `${engine}-${o.metadata.name}.yaml`), o }));
  // Only files an earlier export wrote are replaced or removed: a stale one (a policy since
  // deleted) would otherwise be applied again by `kubectl apply -f DIR`.
  const ours = async (file: string) => ((await deps.readText(file)) ?? GENERATED).startsWith(GENERATED);
  for (const { file } of files) {
    if (!(await ours(file))) throw new UsageError(`${printable(file)} exists and was not written by egressfw export: move it away or choose another --out`);
  }
  const wanted = new Set(files.map((f) => path.basename(f.file)));
  const stale = (await deps.listDir(dir)).filter((n) => n.startsWith(`${engine}-egressfw-`) && n.endsWith('.yaml') && !wanted.has(n));
  for (const { file, o } of files) await deps.writeText(file, yamlStream([o], header, notes));
  for (const n of stale) {
    if (!(await ours(path.join(dir, n)))) continue;
    await deps.removeFile(path.join(dir, n));
    deps.warn(`removed ${printable(n)}: no longer exported (kubectl apply does not delete the object: kubectl delete it)`);
  }
  deps.warn(`wrote ${files.length} file${files.length === 1 ? '' : 's'} to ${printable(dir)}: apply with kubectl apply -f ${printable(opts.out)}`);
  return 0;
}
