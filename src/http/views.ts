/**
 * Server-rendered pages from views/ (nunjucks, auto-escaping on).
 */
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import nunjucks from 'nunjucks';

export const VIEWS_DIR = fileURLToPath(new URL('../../views/', import.meta.url));

export function createViews(dir = VIEWS_DIR) {
  const env = new nunjucks.Environment(new nunjucks.FileSystemLoader(dir, { noCache: false }), {
    autoescape: true,
    throwOnUndefined: false,
  });
  // "2026-11-21 07:27 UTC": readable, unambiguous, and short enough not to wrap in a table.
  env.addFilter('when', (value: unknown) => {
    const date = value instanceof Date ? value : typeof value === 'string' ? new Date(value) : undefined;
    if (!date || Number.isNaN(date.getTime())) return '';
    return `${date.toISOString().slice(0, 16).replace('T', ' ')} UTC`;
  });
  const css = readFileSync(new URL('assets/gatehouse.css', `file://${dir.endsWith('/') ? dir : `${dir}/`}`), 'utf8');
  return {
    render(name: string, context: Record<string, unknown>): string {
      return env.render(name, context);
    },
    css,
  };
}

export type Views = ReturnType<typeof createViews>;
