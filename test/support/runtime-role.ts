/**
 * A login role that is a member of `gatehouse_runtime` (migration 0009), the way a deployment's
 * instances connect (docs/deployment.md, "The runtime role"). Roles belong to the whole cluster,
 * which the test files share: each login gets a unique name and is dropped afterwards. Local trust
 * authentication lets it connect from 127.0.0.1 without a password.
 */
import { randomBytes } from 'node:crypto';
import { asSuperuser } from './database.ts';

export interface RuntimeLogin {
  name: string;
  /** `url` (a test database's), connecting as this role instead. */
  urlFor(url: string): string;
  drop(): Promise<void>;
}

/** Call after a test database was migrated (0009 creates gatehouse_runtime when it is missing). */
export async function createRuntimeLogin(): Promise<RuntimeLogin> {
  const name = `gatehouse_rt_${randomBytes(5).toString('hex')}`;
  await asSuperuser(`CREATE ROLE ${name} LOGIN IN ROLE gatehouse_runtime`);
  return {
    name,
    urlFor(url: string) {
      const u = new URL(url);
      u.username = name;
      u.password = '';
      return u.toString();
    },
    drop: () => asSuperuser(`DROP ROLE IF EXISTS ${name}`),
  };
}
