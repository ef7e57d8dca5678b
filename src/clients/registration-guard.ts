/**
 * Abuse controls in front of dynamic registration (issue 4 §3), across instances: a per-address
 * hourly limit (counters in PostgreSQL), a cap on clients waiting for approval, and a body-size
 * limit. A refused registration stores nothing.
 */
import type { RateLimiter } from '../http/rate-limit.ts';
import type { ClientsRepository } from './clients.repository.ts';

export const MAX_REGISTRATION_BODY = 16 * 1024;

export interface Refusal {
  status: 413 | 429 | 503;
  error: string;
  description: string;
  retryAfter?: number;
}

export function createRegistrationGuard(deps: { limiter: RateLimiter; clients: ClientsRepository; perHour: number; maxPending: number }) {
  return {
    async check(request: { ip: string; contentLength: number | undefined }): Promise<Refusal | undefined> {
      if (request.contentLength !== undefined && request.contentLength > MAX_REGISTRATION_BODY) {
        return { status: 413, error: 'invalid_request', description: `the registration body is larger than ${MAX_REGISTRATION_BODY} bytes` };
      }
      const limit = await deps.limiter.hit(`register-ip:${request.ip}`, deps.perHour, 3600);
      if (!limit.allowed) {
        return { status: 429, error: 'invalid_request', description: `too many registrations from this address: try again in ${limit.retryAfter} seconds`, retryAfter: limit.retryAfter };
      }
      if ((await deps.clients.countPending()) >= deps.maxPending) {
        return {
          status: 503,
          error: 'temporarily_unavailable',
          description: 'registration is paused: too many clients are waiting for an administrator\'s approval',
          retryAfter: 3600,
        };
      }
      return undefined;
    },
  };
}

export type RegistrationGuard = ReturnType<typeof createRegistrationGuard>;
