/**
 * The daemon's Prometheus metrics: every name, type and label in one place
 * (the contract the alert rules in examples/prometheus/ and the tests read),
 * kept in a prom-client registry. Fed by the daemon's rounds and log events,
 * the kernel's refusal records and the gate's query lines; rendered in the
 * text exposition format for the endpoint and the textfile. No I/O here.
 *
 * Conventions (node_exporter's): prefix egressfw_, base units (seconds),
 * counters end in _total, build data in egressfw_build_info. No domain name
 * is a label unless metrics.domainLabels is on (one series per name).
 */
import { Counter, Gauge, Histogram, Registry } from 'prom-client';
import type { Round } from '../engine.js';
import { NFT, SET } from '../plan/kernel-names.js';
import { HOST, type KernelRecord } from '../audit/records.js';
import { countOf, parseQueryLine } from '../gate/log.js';
import type { Family } from '../net/ip.js';

export interface BuildInfo {
  version: string;
  nodejs: string;
}

/** Kinds of error counted by egressfw_errors_total{kind}: the daemon's job names. */
export const ERROR_KINDS = ['refresh', 'drift-check', 'reload', 'audit-collect', 'audit-snapshot', 'gate', 'metrics'] as const;
/** DNS gate decisions (egressfw_dns_queries_total{decision}) */
export const DNS_DECISIONS = ['answered', 'refused', 'failed', 'shed'] as const;
/** upstream latency buckets, seconds: a LAN resolver answers in ms, a far one in 10s of ms, a timeout at seconds */
const DNS_BUCKETS = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5];
const SYNC_BUCKETS = [0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60];

export interface MetricsOptions {
  /** one egressfw_domain_ok{domain} series per allowed name (off by default: cardinality, and names can be private) */
  domainLabels: boolean;
  /** unix seconds */
  now: () => number;
}

export class Metrics {
  readonly registry = new Registry();
  private readonly r = [this.registry];
  private readonly enforced = new Gauge({ name: 'egressfw_enforced', help: 'Whether a part is enforced as planned (1) or not (0): host, containers, and each Docker network egressfw cannot judge (part="network").', labelNames: ['part', 'network'], registers: this.r });
  private readonly audit = new Gauge({ name: 'egressfw_audit_mode', help: 'mode: audit (1: refusals are recorded and let through) or enforce (0).', registers: this.r });
  private readonly driftOps = new Gauge({ name: 'egressfw_drift_operations', help: 'Operations by which the kernel differs from the saved state at the last check (0: no drift).', registers: this.r });
  private readonly driftFound = new Counter({ name: 'egressfw_drift_detected_total', help: 'Drift checks that found the kernel differing from the saved state.', registers: this.r });
  private readonly driftRepaired = new Counter({ name: 'egressfw_drift_repaired_total', help: 'Drift repairs applied successfully.', registers: this.r });
  private readonly lastSync = new Gauge({ name: 'egressfw_last_sync_success_timestamp_seconds', help: 'Unix time of the last successful sync (refresh or repair) that applied the saved state.', registers: this.r });
  private readonly lastRefresh = new Gauge({ name: 'egressfw_last_refresh_success_timestamp_seconds', help: 'Unix time of the last successful refresh (DNS resolved, kernel updated).', registers: this.r });
  private readonly syncSeconds = new Histogram({ name: 'egressfw_sync_duration_seconds', help: 'Duration of the daemon\'s jobs that apply state: refresh (DNS and apply) and repair (apply only).', labelNames: ['job'], buckets: SYNC_BUCKETS, registers: this.r });
  private readonly errors = new Counter({ name: 'egressfw_errors_total', help: 'Errors by kind (the daemon job that failed).', labelNames: ['kind'], registers: this.r });
  private readonly domains = new Gauge({ name: 'egressfw_domains', help: 'Allowed names by last resolution status (ok, nxdomain, timeout, servfail, never-resolved, ...).', labelNames: ['status'], registers: this.r });
  private readonly lkg = new Gauge({ name: 'egressfw_domains_last_known_good', help: 'Names whose last resolution failed and that keep their last-known-good addresses.', registers: this.r });
  private readonly setElements = new Gauge({ name: 'egressfw_set_elements', help: 'Elements in each kernel set egressfw owns (ipset egressfw-v4/-v6; nft allow4/6, gate4/6, refused4/6).', labelNames: ['set'], registers: this.r });
  private readonly gateAdmitted = new Gauge({ name: 'egressfw_gate_admitted_addresses', help: 'Address elements the DNS gate has put into the kernel (nft sets gate4/gate6) and that have not timed out.', labelNames: ['family'], registers: this.r });
  private readonly refused = new Counter({ name: 'egressfw_refused_connections_total', help: 'New connections refused (in audit mode: that would have been refused), from the kernel\'s own record counters; elements expire 7 days after last use, which reads as a counter reset.', labelNames: ['part', 'family'], registers: this.r });
  private readonly dns = new Counter({ name: 'egressfw_dns_queries_total', help: 'DNS gate decisions: answered (allowed name), refused (not allowed, never asked upstream), failed (upstream or kernel), shed (dropped under load).', labelNames: ['decision'], registers: this.r });
  private readonly upstream = new Histogram({ name: 'egressfw_dns_upstream_duration_seconds', help: 'DNS gate: time asking upstream for answers not in its cache.', buckets: DNS_BUCKETS, registers: this.r });
  // registered only while the gate is enabled: a host without the gate has no egressfw_gate_up, so `== 0` alerts mean a gate that is down
  private readonly gateUp = new Gauge({ name: 'egressfw_gate_up', help: 'DNS gate process running (1) or not (0); absent when the gate is not enabled.', registers: [] });
  private readonly gateRestarts = new Counter({ name: 'egressfw_gate_restarts_total', help: 'Times the daemon started the DNS gate again (after it exited, or for a config change).', registers: this.r });
  private readonly build = new Gauge({ name: 'egressfw_build_info', help: 'Build and host facts (value 1): egressfw and Node.js versions, Docker version and firewall backend.', labelNames: ['version', 'nodejs', 'docker', 'firewall_backend'], registers: this.r });
  private readonly domainOk: Gauge | null;
  private kernelRefused = new Map<string, number>();
  private gateStarts = 0;
  private buildInfo: BuildInfo;

  constructor(
    build: BuildInfo,
    private readonly o: MetricsOptions,
  ) {
    this.buildInfo = build;
    this.build.set({ ...build, docker: '', firewall_backend: '' }, 1);
    this.domainOk = o.domainLabels ? new Gauge({ name: 'egressfw_domain_ok', help: 'Per allowed name (metrics.domainLabels): last resolution ok (1) or not (0).', labelNames: ['domain'], registers: this.r }) : null;
    for (const k of ERROR_KINDS) this.errors.inc({ kind: k }, 0);
    for (const d of DNS_DECISIONS) this.dns.inc({ decision: d }, 0);
  }

  /**
   * What a round saw: enforcement, names, sets. `installed`: a sync has succeeded before. `synced`: the round
   * was just applied and read back (a refresh or repair), so nothing differs now; the set sizes are as read
   * before the apply until the next drift check.
   */
  round(round: Round, o: { installed: boolean; synced: boolean }): void {
    const { config, observed, coverage, plan } = round;
    const installed = o.installed || o.synced;
    const drift = o.synced ? 0 : plan.ops.length;
    this.driftOps.set(installed ? drift : 0);
    this.audit.set(config.mode === 'audit' ? 1 : 0);
    const clean = installed && drift === 0 && (o.synced || plan.blockers.length === 0);
    this.enforced.reset();
    if (config.host.enabled) this.enforced.set({ part: 'host', network: '' }, clean && round.scope === 'full' && observed.ufw?.enabled === true ? 1 : 0);
    if (config.containers.enabled) this.enforced.set({ part: 'containers', network: '' }, clean && observed.nft?.chain ? 1 : 0);
    for (const n of coverage.notEnforced) this.enforced.set({ part: 'network', network: n.name }, 0);

    this.domains.reset();
    let lkg = 0;
    const counts = new Map<string, number>();
    this.domainOk?.reset();
    for (const d of config.domains) {
      const s = round.state.domains[d.name];
      const status = s?.status ?? 'never-resolved';
      counts.set(status, (counts.get(status) ?? 0) + 1);
      if (status !== 'ok' && s && Object.keys(s.ips).length) lkg++;
      this.domainOk?.set({ domain: d.name }, status === 'ok' ? 1 : 0);
    }
    for (const [status, n] of counts) this.domains.set({ status }, n);
    this.lkg.set(lkg);

    this.setElements.reset();
    for (const f of [4, 6] as Family[]) {
      if (observed.sets[f].exists) this.setElements.set({ set: SET[f] }, observed.sets[f].entries.length);
      for (const name of [NFT.allow[f], NFT.gate[f], NFT.refused[f]]) {
        const elems = observed.nft?.sets.get(name);
        if (elems) this.setElements.set({ set: name }, elems.length);
      }
      this.gateAdmitted.set({ family: `ipv${f}` }, observed.nft?.sets.get(NFT.gate[f])?.length ?? 0);
    }
    if (coverage.docker) this.setBuild({ docker: coverage.docker.version, firewall_backend: coverage.docker.firewallBackend });
  }

  /** The daemon's log events, counted where they happen (one place: the daemon logs every job's outcome). */
  event(event: string, fields: Record<string, unknown>): void {
    const now = this.o.now();
    const sec = typeof fields.ms === 'number' ? fields.ms / 1000 : undefined;
    switch (event) {
      case 'refresh':
        this.lastRefresh.set(now);
        this.lastSync.set(now);
        if (sec !== undefined) this.syncSeconds.observe({ job: 'refresh' }, sec);
        break;
      case 'drift-detected':
        this.driftFound.inc();
        break;
      case 'drift-repaired':
        this.driftRepaired.inc();
        this.lastSync.set(now);
        if (sec !== undefined) this.syncSeconds.observe({ job: 'repair' }, sec);
        break;
      case 'error': {
        const job = String(fields.job ?? 'other');
        this.errors.inc({ kind: job });
        break;
      }
    }
  }

  /** The gate supervisor's view: running or not, times started (null: gate not enabled, no series). */
  gate(g: { running: boolean; starts: number } | null): void {
    const registered = this.registry.getSingleMetric('egressfw_gate_up') !== undefined;
    if (g === null) {
      if (registered) this.registry.removeSingleMetric('egressfw_gate_up');
    } else {
      if (!registered) this.registry.registerMetric(this.gateUp);
      this.gateUp.set(g.running ? 1 : 0);
    }
    this.gateStarts = g?.starts ?? 0;
  }

  /** One line of the gate's query log (its stdout; the contract is src/gate/log.ts); anything else is ignored. */
  gateLine(raw: string): void {
    const l = parseQueryLine(raw);
    if (!l) return;
    const verdict: string = l.verdict;
    const decision = verdict === 'allowed' ? 'answered' : verdict === 'refused' ? 'refused' : verdict === 'failed' ? 'failed' : verdict === 'shed' ? 'shed' : null;
    if (!decision) return;
    this.dns.inc({ decision }, countOf(l)); // a shed line may stand for many
    // Fresh answers: time in the gate less the release (kernel insert and answer) is the upstream's share.
    if (decision === 'answered' && !l.cached && typeof l.ms === 'number') this.upstream.observe(Math.max(0, l.ms - (l.releaseMs ?? 0)) / 1000);
  }

  /** The kernel's refusal records (nft refused4/6 for containers, ipset records for the host): their packet counters summed. */
  kernelRecords(records: KernelRecord[], read: string[]): void {
    const sums = new Map<string, number>();
    for (const side of read) sums.set(side, 0); // a side read with no records counts 0, not absent
    for (const r of records) {
      const key = `${r.src === HOST ? 'host' : 'containers'}${r.family}`;
      sums.set(key, (sums.get(key) ?? 0) + r.packets);
    }
    this.kernelRefused = sums;
  }

  private setBuild(b: { docker: string; firewall_backend: string }): void {
    this.build.reset();
    this.build.set({ ...this.buildInfo, ...b }, 1);
  }

  /** The text exposition format (what /metrics serves and the textfile holds). */
  async render(): Promise<string> {
    this.refused.reset();
    for (const [key, n] of this.kernelRefused) this.refused.inc({ part: key.slice(0, -1), family: `ipv${key.slice(-1)}` }, n);
    this.gateRestarts.reset();
    this.gateRestarts.inc(Math.max(0, this.gateStarts - 1));
    return this.registry.metrics();
  }

  get contentType(): string {
    return this.registry.contentType;
  }
}
