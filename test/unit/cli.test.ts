import path from 'node:path';
import { cliCases } from '../support/cli-cases.js';

// End to end through the built CLI (npm test builds first). EFW_CLI='["node18", "dist/pkg/egressfw.mjs"]' (a JSON
// argv) drives another build or another Node instead; test/pkg/runtimes.test.ts runs these cases on the bundle
// under Node 18, 20 and 22.
const argv: string[] = process.env.EFW_CLI ? (JSON.parse(process.env.EFW_CLI) as string[]) : [process.execPath, path.resolve('dist/cli.js')];
cliCases(`egressfw CLI (${argv.join(' ')})`, () => argv);
