/**
 * Wiring: builds the real object graph from a config and an open database. No singletons, so tests
 * build the same graph the server runs.
 */
import type { Logger } from 'pino';
import type { KoaContextWithOIDC } from 'oidc-provider';
import { createAccountsService } from '../accounts/accounts.service.ts';
import type { Config } from '../config/config.ts';
import type { DatabaseHandle } from '../db/database.ts';
import { createViews } from '../http/views.ts';
import { createKeysService } from '../keys/keys.service.ts';
import { createSecretBox } from '../keys/secret-box.ts';
import { createInteractionsFacade } from '../oidc/interactions.facade.ts';
import { createProvider } from '../oidc/profile.ts';
import { createResourcesService } from '../resources/resources.service.ts';
import { createPublicApp } from './public-app.ts';

const ERROR_TITLES: Record<string, string> = {
  invalid_client: 'This application is not known to Gatehouse',
  invalid_redirect_uri: 'This application sent you to an address it has not registered',
  invalid_request: 'The application sent an invalid request',
  invalid_target: 'The application asked for an unknown MCP server',
};

export async function buildApp(config: Config, database: DatabaseHandle, logger: Logger) {
  const { db } = database;
  const secretBox = createSecretBox(config.keyEncryptionKey);
  const keysService = createKeysService({ db, secretBox });
  const { keys, created } = await keysService.ensure();
  for (const what of created) logger.warn({ event: 'keys.generated' }, `generated a new ${what}`);

  const views = createViews();
  const resources = createResourcesService({ db });
  const accounts = createAccountsService({ db });
  const provider = createProvider({
    config,
    db,
    secretBox,
    keys,
    resources,
    accounts,
    renderError(ctx: KoaContextWithOIDC, out) {
      ctx.type = 'html';
      ctx.body = views.render('error.njk', {
        title: ERROR_TITLES[out.error] ?? 'Gatehouse could not continue',
        message: 'Gatehouse stopped here rather than send you back to an address it cannot trust.',
        error: out.error,
        description: out.error_description,
      });
    },
  });
  const interactions = createInteractionsFacade(provider);
  const app = createPublicApp({
    provider,
    interactions,
    accounts,
    resources,
    views,
    logger,
    trustProxy: config.trustProxy,
    registrationOpen: config.registration === 'open',
    csrfSecret: keys.cookies[0]!,
  });
  return { app, provider, resources, accounts, keys, db };
}

export type BuiltApp = Awaited<ReturnType<typeof buildApp>>;
