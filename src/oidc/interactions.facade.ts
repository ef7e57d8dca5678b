/**
 * What the login and consent pages need from oidc-provider, without importing it elsewhere.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import { errors, type Provider } from 'oidc-provider';

export interface InteractionView {
  uid: string;
  prompt: 'login' | 'consent' | string;
  accountId: string | undefined;
  clientId: string;
  clientName: string | undefined;
  redirectUri: string;
  /** Scopes still to be consented, per resource (canonical URI). */
  missingResourceScopes: Record<string, string[]>;
  existingGrantId: string | undefined;
  /** What the authorization request asked for (canonical resource URI, and the scopes Gatehouse will ask). */
  requested: { resource: string | undefined; scopes: string[] };
  /** The approval prompt: the client's status. */
  clientStatus: string | undefined;
}

export class InteractionNotFoundError extends Error {
  readonly code = 'interaction_not_found';
}

export function createInteractionsFacade(provider: Provider) {
  async function details(req: IncomingMessage, res: ServerResponse) {
    try {
      return await provider.interactionDetails(req, res);
    } catch (err) {
      if (err instanceof errors.SessionNotFound || err instanceof errors.InvalidRequest) {
        throw new InteractionNotFoundError('this sign-in request has expired or was already completed');
      }
      throw err;
    }
  }

  return {
    async load(req: IncomingMessage, res: ServerResponse, uid: string): Promise<InteractionView> {
      const interaction = await details(req, res);
      if (interaction.uid !== uid) throw new InteractionNotFoundError('this sign-in request does not belong to this browser');
      const clientId = String(interaction.params.client_id);
      const client = await provider.Client.find(clientId);
      const d = interaction.prompt.details as { missingResourceScopes?: Record<string, string[]>; clientStatus?: string };
      const resource = interaction.params.resource;
      return {
        uid: interaction.uid,
        prompt: interaction.prompt.name,
        accountId: interaction.session?.accountId,
        clientId,
        clientName: client?.clientName,
        redirectUri: String(interaction.params.redirect_uri ?? client?.redirectUris?.[0] ?? ''),
        missingResourceScopes: d.missingResourceScopes ?? {},
        existingGrantId: interaction.grantId,
        requested: {
          resource: typeof resource === 'string' ? resource : undefined,
          scopes: String(interaction.params.scope ?? '').split(' ').filter(Boolean),
        },
        clientStatus: d.clientStatus,
      };
    },

    /** Records the signed-in account; returns where the browser goes next. */
    async finishLogin(req: IncomingMessage, res: ServerResponse, accountId: string): Promise<string> {
      const interaction = await details(req, res);
      const previous = interaction.session as { accountId?: string; cookie?: string } | undefined;
      if (previous?.accountId && previous.accountId !== accountId) {
        // Signing in as another account (prompt=login, or a shared browser): end the other account's
        // session first. Left to itself, oidc-provider would answer with an auto-submitting logout
        // form — script, which our CSP forbids, posting to the end-session endpoint, which is off.
        // A fresh session (new id) is created when the interaction resumes.
        if (previous.cookie) await (await provider.Session.find(previous.cookie))?.destroy();
        delete (interaction as { session?: unknown }).session;
        await interaction.save(Math.max(1, (interaction.exp ?? 0) - Math.floor(Date.now() / 1000)));
      }
      return provider.interactionResult(req, res, { login: { accountId } }, { mergeWithLastSubmission: false });
    },

    /** Grants the missing scopes on the user's grant for this client; returns where the browser goes next. */
    async finishConsent(req: IncomingMessage, res: ServerResponse, view: InteractionView): Promise<string> {
      if (!view.accountId) throw new InteractionNotFoundError('sign in first');
      const grant = view.existingGrantId
        ? await provider.Grant.find(view.existingGrantId)
        : new provider.Grant({ accountId: view.accountId, clientId: view.clientId });
      if (!grant) throw new InteractionNotFoundError('this authorization is no longer valid: start again from your application');
      for (const [resource, scopes] of Object.entries(view.missingResourceScopes)) {
        grant.addResourceScope(resource, scopes.join(' '));
      }
      const grantId = await grant.save();
      return provider.interactionResult(
        req,
        res,
        { consent: view.existingGrantId ? {} : { grantId } },
        { mergeWithLastSubmission: true },
      );
    },

    /** Ends the interaction with nothing decided: the authorization request is evaluated again (after an approval). */
    async retry(req: IncomingMessage, res: ServerResponse): Promise<string> {
      return provider.interactionResult(req, res, {}, { mergeWithLastSubmission: false });
    },

    /** Ends the interaction with an OAuth error returned to the client (RFC 6749 §4.1.2.1). */
    async abort(req: IncomingMessage, res: ServerResponse, error: string, description: string): Promise<string> {
      return provider.interactionResult(req, res, { error, error_description: description }, { mergeWithLastSubmission: false });
    },
  };
}

export type InteractionsFacade = ReturnType<typeof createInteractionsFacade>;
