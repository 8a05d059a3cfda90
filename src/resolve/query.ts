/** What a DNS query answers, and the injected function that asks (src/system/dns-client.ts does it over the network). */
export type RecordType = 'A' | 'AAAA';

export interface Answer {
  name: string;
  type: string;
  ttl: number;
  data: string;
}

export interface QueryResult {
  rcode: 'NOERROR' | 'NXDOMAIN' | 'SERVFAIL' | 'REFUSED' | string;
  answers: Answer[];
}

export type QueryFailure = 'timeout' | 'malformed' | 'network';

export class QueryError extends Error {
  constructor(
    readonly kind: QueryFailure,
    message: string,
  ) {
    super(message);
  }
}

export interface Server {
  host: string;
  port: number;
}

/** One question to one server: UDP first, TCP when the answer is truncated. */
export type QueryFn = (server: Server, name: string, type: RecordType, timeoutMs: number) => Promise<QueryResult>;
