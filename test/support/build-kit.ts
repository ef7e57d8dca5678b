/**
 * vitest global setup: builds the `gatehouse/resource-server` export (dist/resource-server) before
 * any test imports it through the package name, so tests never run against a stale build.
 */
import { execFileSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';

export default function setup(): void {
  const root = fileURLToPath(new URL('../../', import.meta.url));
  execFileSync(process.execPath, ['node_modules/typescript/bin/tsc', '-p', 'tsconfig.kit.json'], { cwd: root, stdio: 'inherit' });
}
