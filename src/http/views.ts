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
  const css = readFileSync(new URL('assets/gatehouse.css', `file://${dir.endsWith('/') ? dir : `${dir}/`}`), 'utf8');
  return {
    render(name: string, context: Record<string, unknown>): string {
      return env.render(name, context);
    },
    css,
  };
}

export type Views = ReturnType<typeof createViews>;
