import { parseConfig } from '../../src/config/load.js';
import { ConfigError } from '../../src/errors.js';

/** The problems a config text is refused with (fails the test if it is accepted). */
export function problems(yaml: string): string[] {
  try {
    parseConfig(yaml, 'test.yml');
  } catch (e) {
    if (e instanceof ConfigError) return e.problems;
    throw e;
  }
  throw new Error('expected a ConfigError');
}
