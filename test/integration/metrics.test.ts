/**
 * Prometheus metrics on the admin listener (issue 7 §2): requests by route and status, latency
 * histograms, tokens issued and refreshed, reuse detections, pending clients and the database pool.
 * Counted from real flows; route labels stay bounded whatever paths are asked for; nothing secret
 * reaches /metrics; /metrics is not served on the public listener.
 */
import request from 'supertest';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { createMetrics } from '../../src/metrics/metrics.ts';
import { seed, startTestApp, type TestApp } from '../support/app.ts';
import { testDatabaseKind, whileDatabaseIsAway } from '../support/database.ts';
import { authorizationUrl, obtainTokens, pkcePair, registerClient, tokenRequest } from '../support/oauth.ts';

type Labels = Record<string, string>;
interface Sample {
  name: string;
  labels: Labels;
  value: number;
}

function parse(text: string): Sample[] {
  const samples: Sample[] = [];
  for (const line of text.split('\n')) {
    if (!line || line.startsWith('#')) continue;
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$/.exec(line);
    if (!m) throw new Error(`not a Prometheus sample: ${line}`);
    const labels: Labels = {};
    for (const [, k, v] of m[2]?.matchAll(/(\w+)="((?:[^"\\]|\\.)*)"/g) ?? []) labels[k!] = v!;
    samples.push({ name: m[1]!, labels, value: Number(m[3]) });
  }
  return samples;
}

/** The sample `name` whose labels include `labels`; 0 when there is none (a counter not yet bumped). */
function valueOf(samples: Sample[], name: string, labels: Labels = {}): number {
  const found = samples.filter((s) => s.name === name && Object.entries(labels).every(([k, v]) => s.labels[k] === v));
  return found.reduce((sum, s) => sum + s.value, 0);
}

async function scrape(app: TestApp): Promise<{ text: string; samples: Sample[] }> {
  const response = await request(app.adminUrl).get('/metrics');
  expect(response.status).toBe(200);
  return { text: response.text, samples: parse(response.text) };
}

const TOKEN_OK = { listener: 'public', route: '/token', method: 'POST', status: '200' };

describe('on a running app', () => {
  let app: TestApp;
  beforeAll(async () => {
    app = await startTestApp();
    await seed(app);
  });
  afterAll(() => app?.close());

  test('GET /metrics on the admin listener: no sign-in, Prometheus text, no-store', async () => {
    const response = await request(app.adminUrl).get('/metrics');
    expect(response.status).toBe(200);
    expect(response.headers['content-type']).toBe(app.metrics.registry.contentType);
    expect(response.headers['content-type']).toMatch(/^text\/plain; version=0\.0\.4/);
    expect(response.headers['cache-control']).toBe('no-store');
    expect(response.headers['set-cookie']).toBeUndefined();
    const samples = parse(response.text);
    // Process metrics, prefixed.
    expect(samples.some((s) => s.name === 'gatehouse_process_cpu_user_seconds_total')).toBe(true);
    expect(samples.some((s) => s.name === 'gatehouse_nodejs_eventloop_lag_seconds')).toBe(true);
    // Counters that exist before their first event, so that rate() works from the start.
    expect(samples.find((s) => s.name === 'gatehouse_tokens_issued_total' && s.labels.grant_type === 'refresh_token')?.value).toBe(0);
    expect(samples.find((s) => s.name === 'gatehouse_token_reuse_detected_total' && s.labels.grant_type === 'refresh_token')?.value).toBe(0);
    // HEAD works; other methods do not.
    expect((await request(app.adminUrl).head('/metrics')).status).toBe(200);
    expect((await request(app.adminUrl).post('/metrics').set('origin', app.adminUrl)).status).toBe(405);
  });

  test('the public listener does not serve /metrics', async () => {
    const response = await request(app.issuer).get('/metrics');
    expect(response.status).toBe(404);
    expect(response.text).not.toContain('gatehouse_');
  });

  test('a code exchange and a refresh: requests, latencies and tokens by grant type', async () => {
    const before = (await scrape(app)).samples;
    const { client, tokens } = await obtainTokens(app.issuer);
    expect(tokens.status).toBe(200);
    const refreshed = await tokenRequest(app.issuer, { grant_type: 'refresh_token', refresh_token: tokens.body.refresh_token, client_id: client.client_id });
    expect(refreshed.status).toBe(200);
    const after = (await scrape(app)).samples;
    const delta = (name: string, labels: Labels = {}) => valueOf(after, name, labels) - valueOf(before, name, labels);

    expect(delta('gatehouse_http_requests_total', TOKEN_OK)).toBe(2);
    expect(delta('gatehouse_http_request_duration_seconds_count', { listener: 'public', route: '/token', method: 'POST' })).toBe(2);
    expect(delta('gatehouse_http_request_duration_seconds_sum', { listener: 'public', route: '/token', method: 'POST' })).toBeGreaterThan(0);
    // The flow's other steps, each under its route template.
    expect(delta('gatehouse_http_requests_total', { listener: 'public', route: '/register', method: 'POST', status: '201' })).toBe(1);
    expect(delta('gatehouse_http_requests_total', { listener: 'public', route: '/authorize', method: 'GET', status: '303' })).toBe(1);
    expect(delta('gatehouse_http_requests_total', { listener: 'public', route: '/interaction/:uid', method: 'GET' })).toBeGreaterThanOrEqual(1);
    expect(delta('gatehouse_http_requests_total', { listener: 'public', route: '/interaction/:uid/login', method: 'POST' })).toBe(1);
    expect(delta('gatehouse_http_requests_total', { listener: 'public', route: '/authorize/:uid', method: 'GET' })).toBeGreaterThanOrEqual(1);
    // The histogram's buckets are cumulative and end at +Inf = count.
    const inf = valueOf(after, 'gatehouse_http_request_duration_seconds_bucket', { listener: 'public', route: '/token', method: 'POST', le: '+Inf' });
    expect(inf).toBe(valueOf(after, 'gatehouse_http_request_duration_seconds_count', { listener: 'public', route: '/token', method: 'POST' }));

    expect(delta('gatehouse_tokens_issued_total', { grant_type: 'authorization_code' })).toBe(1);
    expect(delta('gatehouse_tokens_issued_total', { grant_type: 'refresh_token' })).toBe(1);
    expect(delta('gatehouse_tokens_refreshed_total')).toBe(1);
    expect(delta('gatehouse_token_reuse_detected_total')).toBe(0);
    // And the admin listener counts itself.
    expect(delta('gatehouse_http_requests_total', { listener: 'admin', route: '/metrics', method: 'GET', status: '200' })).toBe(1);
  });

  test('a refused token request counts as its status, and issues nothing', async () => {
    const before = (await scrape(app)).samples;
    const refused = await tokenRequest(app.issuer, { grant_type: 'refresh_token', refresh_token: 'not-a-token', client_id: 'no-such-client' });
    expect(refused.status).toBe(401);
    const after = (await scrape(app)).samples;
    const delta = (name: string, labels: Labels = {}) => valueOf(after, name, labels) - valueOf(before, name, labels);
    expect(delta('gatehouse_http_requests_total', { ...TOKEN_OK, status: '401' })).toBe(1);
    expect(delta('gatehouse_tokens_issued_total')).toBe(0);
  });

  test('a replayed refresh token: one reuse detection, as in the audit trail', async () => {
    const { client, tokens } = await obtainTokens(app.issuer);
    const first = tokens.body.refresh_token as string;
    const second = await tokenRequest(app.issuer, { grant_type: 'refresh_token', refresh_token: first, client_id: client.client_id });
    expect(second.status).toBe(200);
    // The successor is used, so presenting `first` again is reuse, not a retry within the rotation grace.
    expect((await tokenRequest(app.issuer, { grant_type: 'refresh_token', refresh_token: second.body.refresh_token, client_id: client.client_id })).status).toBe(200);
    const before = (await scrape(app)).samples;
    const replay = await tokenRequest(app.issuer, { grant_type: 'refresh_token', refresh_token: first, client_id: client.client_id });
    expect(replay.status).toBe(400);
    const after = (await scrape(app)).samples;
    const delta = (name: string, labels: Labels = {}) => valueOf(after, name, labels) - valueOf(before, name, labels);
    expect(delta('gatehouse_token_reuse_detected_total', { grant_type: 'refresh_token' })).toBe(1);
    expect(delta('gatehouse_tokens_refreshed_total')).toBe(0);
    expect(delta('gatehouse_http_requests_total', { ...TOKEN_OK, status: '400' })).toBe(1);
    // Metrics and audit agree over the whole run.
    const audited = async (event: string) => (await app.db.selectFrom('audit_events').select('id').where('event', '=', event).execute()).length;
    expect(valueOf(after, 'gatehouse_token_reuse_detected_total')).toBe(await audited('token.reuse_detected'));
    expect(valueOf(after, 'gatehouse_tokens_refreshed_total')).toBe(await audited('token.refreshed'));
    expect(valueOf(after, 'gatehouse_tokens_issued_total')).toBe((await audited('token.issued')) + (await audited('token.refreshed')));
  });

  test.runIf(testDatabaseKind() === 'postgres')('the PostgreSQL pool: connections by state, waiting, size', async () => {
    const { samples } = await scrape(app);
    expect(valueOf(samples, 'gatehouse_db_pool_max')).toBe(10);
    expect(samples.some((s) => s.name === 'gatehouse_db_pool_connections' && s.labels.state === 'idle')).toBe(true);
    expect(samples.some((s) => s.name === 'gatehouse_db_pool_connections' && s.labels.state === 'in_use')).toBe(true);
    expect(valueOf(samples, 'gatehouse_db_pool_connections')).toBeLessThanOrEqual(10);
    expect(valueOf(samples, 'gatehouse_db_pool_waiting')).toBe(0);
  });

  test('route labels stay bounded: random path segments never become labels', async () => {
    const hostile = (tag: string) => [
      request(app.issuer).get(`/interaction/${tag}`),
      request(app.issuer).post(`/interaction/${tag}/login`),
      request(app.issuer).get(`/authorize/${tag}`),
      request(app.issuer).get(`/${tag}`),
      request(app.issuer).get(`/${tag}/${tag}`),
      request(app.issuer).get(`/.well-known/oauth-protected-resource/${tag}`),
      request(app.issuer).get(`/resources/${tag}/protected-resource-metadata`),
      request(app.issuer).get(`/.well-known/oauth-authorization-server/${tag}`),
      request(app.issuer).get(`/assets/${tag}.css`),
      request(app.issuer).get(`/token?code=${tag}`),
      request(app.issuer).delete(`/register/${tag}`),
      request(app.adminUrl).get(`/${tag}`),
      request(app.adminUrl).get(`/clients/${tag}`),
      request(app.adminUrl).get(`/api/v1/clients/${tag}`),
      request(app.adminUrl).get(`/api/v1/${tag}`),
      request(app.adminUrl).get(`/metrics/${tag}`),
    ];
    const series = (samples: Sample[]) =>
      new Set(samples.filter((s) => s.name.startsWith('gatehouse_http_')).map((s) => `${s.name}${JSON.stringify(s.labels)}`));

    const round = async (n: number) => {
      const tags: string[] = [];
      for (let i = 0; i < n; i++) {
        const tag = `rnd${Math.random().toString(36).slice(2, 12)}`;
        tags.push(tag);
        await Promise.all(hostile(tag));
      }
      return tags;
    };
    await round(1);
    const settled = series((await scrape(app)).samples);
    const tags = await round(5);
    const { text, samples } = await scrape(app);
    expect(series(samples)).toEqual(settled);
    for (const tag of tags) expect(text).not.toContain(tag);
    // Every route label is a template, a fixed path or 'unmatched'.
    const routes = new Set(samples.filter((s) => s.name === 'gatehouse_http_requests_total').map((s) => s.labels.route!));
    for (const route of routes) expect(route).toMatch(/^(unmatched|\/[a-z0-9/._:-]*)$/);
    expect(routes).toContain('unmatched');
    // A router's own check answering first (the admin API's sign-in) still names the route it guards.
    expect(valueOf(samples, 'gatehouse_http_requests_total', { listener: 'admin', route: '/api/v1/clients/:id', method: 'GET', status: '401' })).toBe(6);
    expect(valueOf(samples, 'gatehouse_http_requests_total', { listener: 'public', route: '/interaction/:uid', method: 'GET' })).toBeGreaterThanOrEqual(6);
    expect(valueOf(samples, 'gatehouse_http_requests_total', { listener: 'public', route: '/resources/:id/protected-resource-metadata', method: 'GET', status: '404' })).toBe(6);
  });

  test('nothing secret reaches /metrics: tokens, codes, client ids and secrets, interaction uids', async () => {
    const confidential = await registerClient(app.issuer, { token_endpoint_auth_method: 'client_secret_post' });
    expect(confidential.client_secret).toBeTruthy();
    const { client, tokens, callback } = await obtainTokens(app.issuer);
    const refreshed = await tokenRequest(app.issuer, { grant_type: 'refresh_token', refresh_token: tokens.body.refresh_token, client_id: client.client_id });
    // An interaction uid, as a browser sees it.
    const { challenge } = pkcePair();
    const started = await fetch(
      authorizationUrl(app.issuer, {
        client_id: client.client_id,
        response_type: 'code',
        redirect_uri: client.redirect_uris[0],
        code_challenge: challenge,
        code_challenge_method: 'S256',
        resource: 'https://mcp.example.com',
      }),
      { redirect: 'manual' },
    );
    const uid = /\/interaction\/([^/?]+)/.exec(started.headers.get('location') ?? '')?.[1];
    expect(uid).toBeTruthy();
    await fetch(`${app.issuer}/interaction/${uid}`);

    const secrets = [
      tokens.body.access_token,
      tokens.body.refresh_token,
      refreshed.body.access_token,
      refreshed.body.refresh_token,
      callback.searchParams.get('code'),
      client.client_id,
      confidential.client_id,
      confidential.client_secret,
      uid,
    ] as string[];
    const { text } = await scrape(app);
    for (const secret of secrets) {
      expect(secret.length).toBeGreaterThan(8);
      expect(text).not.toContain(secret);
    }
  });

  test('counters survive a rebuild of the app (a key rotation) when the metrics object is passed in', async () => {
    const metrics = createMetrics({ processMetrics: false });
    const other = await startTestApp({ testOnly: { metrics } });
    try {
      await request(other.issuer).get('/healthz');
      await other.reload();
      await request(other.issuer).get('/healthz');
      const { samples } = await scrape(other);
      expect(valueOf(samples, 'gatehouse_http_requests_total', { listener: 'public', route: '/healthz', method: 'GET', status: '200' })).toBe(2);
      // Its own registry: nothing of the first app's counts.
      expect(valueOf(samples, 'gatehouse_tokens_issued_total')).toBe(0);
    } finally {
      await other.close();
    }
  });
});

describe('pending clients (manual approval)', () => {
  let app: TestApp;
  beforeAll(async () => {
    app = await startTestApp({ env: { GATEHOUSE_CLIENT_APPROVAL: 'manual' } });
    await seed(app);
  });
  afterAll(() => app?.close());

  test('the gauge counts clients waiting for approval, at scrape time', async () => {
    expect(valueOf((await scrape(app)).samples, 'gatehouse_clients_pending')).toBe(0);
    await registerClient(app.issuer);
    await registerClient(app.issuer);
    expect(valueOf((await scrape(app)).samples, 'gatehouse_clients_pending')).toBe(2);
    const [first] = await app.clients.list({ status: 'pending' });
    await app.clients.approve(first!.clientId, [{ resource: 'https://mcp.example.com', scopes: ['files:read'] }], 'admin:test');
    expect(valueOf((await scrape(app)).samples, 'gatehouse_clients_pending')).toBe(1);
  });

  test.runIf(testDatabaseKind() === 'postgres')('with the database away, the scrape still succeeds and keeps the last count', async () => {
    const before = valueOf((await scrape(app)).samples, 'gatehouse_clients_pending');
    await whileDatabaseIsAway(app.database.url!, async () => {
      const started = Date.now();
      const { samples } = await scrape(app);
      expect(Date.now() - started).toBeLessThan(3000);
      expect(valueOf(samples, 'gatehouse_clients_pending')).toBe(before);
      expect(samples.some((s) => s.name === 'gatehouse_db_pool_max')).toBe(true);
    });
  });
});
