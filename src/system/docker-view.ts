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
