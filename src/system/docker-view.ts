import type { DockerView } from '../plan/coverage.js';
import { dockerClient, type DockerClient } from './docker.js';

/** Docker's engine and networks for the coverage report; an error becomes a reason, never a guess. */
export async function inspectDocker(client: DockerClient = dockerClient({ timeoutMs: 5000 })): Promise<DockerView> {
  try {
    const [engine, networks] = await Promise.all([client.engine(), client.networks()]);
    return { engine, networks };
  } catch (e) {
    return { error: (e as Error).message.split('\n')[0]! };
  }
}

/**
 * The running containers, for the policy map. dockerd not running at all (no socket, nobody
 * listening) means no containers: an empty map is the truth. Any other failure (permission, a
 * hung dockerd, a bad answer) is thrown: the caller must not guess an empty map then.
 */
export async function runningContainers(client: DockerClient = dockerClient({ timeoutMs: 5000 })) {
  const { inventoryOf } = await import('../plan/policies.js');
  try {
    return inventoryOf(await client.containers());
  } catch (e) {
    if (/\((ENOENT|ECONNREFUSED)\)/.test((e as Error).message)) return [];
    throw e;
  }
}
