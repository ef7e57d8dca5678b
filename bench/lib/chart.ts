/**
 * bench/chart.svg, drawn by hand (no dependencies): one small panel per scenario, requests/s on the
 * top row and p99 latency on the bottom row, Gatehouse beside the ceiling at each connection count.
 * Each panel has its own linear scale: the point is the distance between the two servers within a
 * scenario, and scenarios differ by orders of magnitude.
 */
import type { BenchResults, Side, SummaryRow } from './report.ts';
import type { ScenarioName } from './load.ts';

const SHORT_TITLES: Record<ScenarioName, string> = {
  refresh: 'refresh (rotation)',
  code: 'code exchange',
  registration: 'registration',
  discovery: 'discovery',
  jwks: 'JWKS',
  flow: 'full flow',
};

const COLORS = { gatehouse: '#1f6feb', ceiling: '#9aa4b2', grid: '#e4e7ec', axis: '#667085', text: '#1d2939', error: '#d92d20' };

const esc = (s: string) => s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;');

function compact(n: number): string {
  if (n === 0) return '0';
  if (n >= 10_000) return `${Math.round(n / 1000)}k`;
  if (n >= 1000) return `${(n / 1000).toFixed(1)}k`;
  if (n >= 100) return n.toFixed(0);
  if (n >= 10) return n.toFixed(1);
  return n.toFixed(2);
}

/** A round step (1, 2 or 5 × 10^k) giving about `ticks` gridlines up to `max`. */
function niceStep(max: number, ticks = 4): number {
  if (max <= 0) return 1;
  const raw = max / ticks;
  const magnitude = 10 ** Math.floor(Math.log10(raw));
  const normalized = raw / magnitude;
  return (normalized <= 1 ? 1 : normalized <= 2 ? 2 : normalized <= 5 ? 5 : 10) * magnitude;
}

interface PanelInput {
  x: number;
  y: number;
  width: number;
  height: number;
  rows: SummaryRow[];
  metric: 'rps' | 'p99';
  showRatio: boolean;
}

function panel({ x, y, width, height, rows, metric, showRatio }: PanelInput): string {
  const out: string[] = [];
  const left = x + 40;
  const right = x + width - 6;
  const top = y + 12;
  const bottom = y + height - (showRatio ? 44 : 30);
  const values = rows.flatMap((r) => [r.gatehouse?.[metric], r.ceiling?.[metric]]).filter((v): v is number => v !== undefined);
  const max = Math.max(...values, 0);
  const step = niceStep(max * 1.1);
  const top_ = Math.max(step, Math.ceil((max * 1.12) / step) * step);
  const scale = (v: number) => bottom - (v / top_) * (bottom - top);

  for (let v = 0; v <= top_ + step / 2; v += step) {
    const gy = scale(v);
    out.push(`<line x1="${left}" y1="${gy.toFixed(1)}" x2="${right}" y2="${gy.toFixed(1)}" stroke="${v === 0 ? COLORS.axis : COLORS.grid}" stroke-width="1"/>`);
    out.push(`<text x="${left - 4}" y="${(gy + 3.5).toFixed(1)}" text-anchor="end" font-size="10" fill="${COLORS.axis}">${compact(v)}</text>`);
  }

  const groupWidth = (right - left) / Math.max(1, rows.length);
  const barWidth = Math.min(30, groupWidth * 0.36);
  rows.forEach((row, i) => {
    const cx = left + groupWidth * (i + 0.5);
    const bars: Array<{ who: 'gatehouse' | 'ceiling'; side: Side | undefined; bx: number }> = [
      { who: 'gatehouse', side: row.gatehouse, bx: cx - barWidth - 2 },
      { who: 'ceiling', side: row.ceiling, bx: cx + 2 },
    ];
    for (const { who, side, bx } of bars) {
      if (!side) {
        out.push(`<text x="${(bx + barWidth / 2).toFixed(1)}" y="${(bottom - 4).toFixed(1)}" text-anchor="middle" font-size="10" fill="${COLORS.axis}">–</text>`);
        continue;
      }
      const value = side[metric];
      const by = scale(value);
      const stroke = side.errors ? ` stroke="${COLORS.error}" stroke-width="2"` : '';
      out.push(
        `<rect x="${bx.toFixed(1)}" y="${by.toFixed(1)}" width="${barWidth.toFixed(1)}" height="${Math.max(0.5, bottom - by).toFixed(1)}" fill="${COLORS[who]}"${stroke}>` +
          `<title>${esc(`${who}, ${row.connections} connections: ${compact(value)} ${metric === 'rps' ? 'req/s' : 'ms p99'}${side.errors ? `, ${side.errors} errors` : ''}`)}</title></rect>`,
      );
      out.push(`<text x="${(bx + barWidth / 2).toFixed(1)}" y="${(by - 3).toFixed(1)}" text-anchor="middle" font-size="10" fill="${COLORS.text}">${compact(value)}</text>`);
    }
    out.push(`<text x="${cx.toFixed(1)}" y="${(bottom + 13).toFixed(1)}" text-anchor="middle" font-size="10.5" fill="${COLORS.axis}">${row.connections} conns</text>`);
    if (showRatio && row.ratio !== undefined) {
      const color = row.ratio >= 0.6 ? COLORS.text : COLORS.error;
      out.push(`<text x="${cx.toFixed(1)}" y="${(bottom + 27).toFixed(1)}" text-anchor="middle" font-size="10.5" font-weight="600" fill="${color}">×${row.ratio.toFixed(2)}</text>`);
    }
  });
  return out.join('\n');
}

export function renderChart(results: BenchResults): string {
  const scenarios = [...new Set(results.summary.map((r) => r.scenario))];
  const columns = Math.max(1, scenarios.length);
  const marginLeft = 34;
  const panelWidth = 190;
  const width = marginLeft + columns * panelWidth + 16;
  const header = 84;
  const rowHeight = 230;
  const height = header + 2 * rowHeight + 40;
  const m = results.machine;
  const out: string[] = [];
  out.push(
    `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" font-family="-apple-system, 'Segoe UI', Helvetica, Arial, sans-serif">`,
    `<rect width="100%" height="100%" fill="#ffffff"/>`,
    `<text x="16" y="26" font-size="17" font-weight="600" fill="${COLORS.text}">Gatehouse (PostgreSQL) vs. oidc-provider ${esc(m.oidcProvider)} in memory — the ceiling</text>`,
    `<text x="16" y="46" font-size="11.5" fill="${COLORS.axis}">${esc(`${results.date.slice(0, 10)} · ${m.nproc} × ${m.cpuModel} · Node ${m.node} · ${m.postgres.split(' on ')[0]} · median of ${results.settings.rounds} round${results.settings.rounds === 1 ? '' : 's'} × ${results.settings.durationSeconds} s · everything on one machine, over loopback`)}</text>`,
    `<rect x="16" y="58" width="12" height="12" fill="${COLORS.gatehouse}"/><text x="33" y="68.5" font-size="12" fill="${COLORS.text}">Gatehouse</text>`,
    `<rect x="110" y="58" width="12" height="12" fill="${COLORS.ceiling}"/><text x="127" y="68.5" font-size="12" fill="${COLORS.text}">ceiling (same engine, in-memory adapter)</text>`,
    `<text x="400" y="68.5" font-size="11.5" fill="${COLORS.axis}">×ratio = Gatehouse ÷ ceiling requests/s · red outline = errors in that run</text>`,
  );
  const rowLabels = ['requests/s (higher is better)', 'p99 latency, ms (lower is better)'];
  (['rps', 'p99'] as const).forEach((metric, rowIndex) => {
    const y = header + rowIndex * rowHeight;
    const cy = y + rowHeight / 2 - 10;
    out.push(`<text transform="translate(${marginLeft - 16} ${cy}) rotate(-90)" text-anchor="middle" font-size="12" font-weight="600" fill="${COLORS.text}">${rowLabels[rowIndex]}</text>`);
    scenarios.forEach((scenario, col) => {
      const x = marginLeft + col * panelWidth;
      if (rowIndex === 0) {
        const unit = scenario === 'flow' ? ' (flows/s)' : '';
        out.push(`<text x="${x + 40 + (panelWidth - 46) / 2}" y="${y + 4}" text-anchor="middle" font-size="12.5" font-weight="600" fill="${COLORS.text}">${esc(SHORT_TITLES[scenario] + unit)}</text>`);
      }
      out.push(panel({ x, y: y + 10, width: panelWidth, height: rowHeight - 16, rows: results.summary.filter((r) => r.scenario === scenario), metric, showRatio: metric === 'rps' }));
    });
  });
  out.push(
    `<text x="16" y="${height - 14}" font-size="11" fill="${COLORS.axis}">Each panel has its own scale. Generated by npm run bench (bench/run.ts); numbers in bench/README.md and bench/results/latest.json.</text>`,
    '</svg>',
  );
  return `${out.join('\n')}\n`;
}
