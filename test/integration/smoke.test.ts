import { decodeJwt, decodeProtectedHeader } from 'jose';
import { afterAll, beforeAll, expect, test } from 'vitest';
import { seed, startTestApp, type TestApp } from '../support/app.ts';
import { obtainTokens } from '../support/oauth.ts';

let app: TestApp;
beforeAll(async () => {
  app = await startTestApp();
  await seed(app);
});
afterAll(() => app?.close());

test('a public client completes the code flow and gets a JWT for the resource', async () => {
  const { tokens, callback, state } = await obtainTokens(app.issuer);
  expect(callback.searchParams.get('iss')).toBe(app.issuer);
  expect(callback.searchParams.get('state')).toBe(state);
  expect(tokens.status).toBe(200);
  expect(decodeProtectedHeader(tokens.body.access_token)).toMatchObject({ typ: 'at+jwt', alg: 'ES256' });
  expect(decodeJwt(tokens.body.access_token)).toMatchObject({ aud: 'https://mcp.example.com', scope: 'files:read', iss: app.issuer });
  expect(tokens.body.refresh_token).toBeTruthy();
});
