/**
 * Abuse controls in front of dynamic registration (issue 4 §3), across instances: a per-address
 * hourly limit (counters in PostgreSQL), a cap on clients waiting for approval, and a body-size
 * limit. A refused registration stores nothing.
 *
 * The body-size limit is checked here on Content-Length, and on the bytes actually received by the
 * public listener's input guard (http/hostile-input.ts, app/public-app.ts), which answers a chunked
 * body larger than the limit with the same refusal (issue 15 §8).
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

/** A body larger than MAX_REGISTRATION_BODY: 413, RFC 7591 §3.2.2-shaped. */
export function oversizedRegistration(): Refusal {
  return { status: 413, error: 'invalid_request', description: `the registration body is larger than ${MAX_REGISTRATION_BODY} bytes` };
}

export function createRegistrationGuard(deps: { limiter: RateLimiter; clients: ClientsRepository; perHour: number; maxPending: number }) {
  return {
    async check(request: { ip: string; contentLength: number | undefined }): Promise<Refusal | undefined> {
      if (request.contentLength !== undefined && request.contentLength > MAX_REGISTRATION_BODY) {
        return oversizedRegistration();
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
