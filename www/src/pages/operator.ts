/**
 * The operator's dashboard (`#/operator`): the oracle's metrics over time as charts (uPlot),
 * read from `GET /metrics/history` with the operator's API token. The token is kept for this
 * tab only (sessionStorage) and sent to the oracle only. While the page is shown, the charts
 * follow the samples (every 5 s).
 */
import uPlot from 'uplot';
import 'uplot/dist/uPlot.min.css';
import { type EstuaryConfig, type MetricsHistory, metricsHistory } from '../sdk';
import { Poller } from './shared';

const TOKEN_KEY = 'estuary.operatorToken';
const REFRESH_MS = 5000;
const NAMES = [
  'estuary_requests',
  'estuary_dag_bytes',
  'estuary_deals',
  'estuary_provider_success_ratio',
  'estuary_provider_activate_epochs',
];
const COLORS = ['#0b7285', '#e8590c', '#5f3dc4', '#2b8a3e', '#c92a2a', '#1864ab', '#e67700', '#862e9c', '#495057'];

/** One chart: its title, unit, and how its lines come from the history. */
interface ChartSpec {
  key: string;
  title: string;
  unit: string;
  lines: (h: MetricsHistory) => { label: string; values: (number | null)[] }[];
}

/** `name{a="x",b="y"}` → its labels. */
function labels(series: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const m of series.matchAll(/(\w+)="([^"]*)"/g)) out[m[1]!] = m[2]!;
  return out;
}

/** The series of metric `name`, summed by label `by` (each value of it a line). */
function sumBy(h: MetricsHistory, name: string, by: string, keep: (l: Record<string, string>) => boolean = () => true) {
  const lines = new Map<string, (number | null)[]>();
  for (const [series, values] of Object.entries(h.series)) {
    if (series !== name && !series.startsWith(`${name}{`)) continue;
    const l = labels(series);
    if (!keep(l)) continue;
    const key = l[by] ?? name;
    const sum = lines.get(key) ?? values.map(() => null);
    lines.set(
      key,
      sum.map((s, i) => (values[i] === null || values[i] === undefined ? s : (s ?? 0) + values[i]!)),
    );
  }
  return [...lines.entries()].sort(([a], [b]) => a.localeCompare(b)).map(([label, values]) => ({ label, values }));
}

/** Per minute: how much a count grew between samples (never negative: a count that fell is 0). */
function perMinute(times: number[], values: (number | null)[]): (number | null)[] {
  return values.map((v, i) => {
    const before = i > 0 ? values[i - 1] : null;
    if (v === null || before === null || before === undefined) return null;
    const minutes = (times[i]! - times[i - 1]!) / 60_000;
    return minutes > 0 ? Math.max(0, v - before) / minutes : null;
  });
}

const HOLDING = new Set(['pinned', 'packed', 'reported']);

const CHARTS: ChartSpec[] = [
  { key: 'requests', title: 'Requests by state', unit: 'requests', lines: (h) => sumBy(h, 'estuary_requests', 'status') },
  {
    key: 'rates',
    title: 'Pins and deals per minute',
    unit: 'per minute',
    lines: (h) => {
      const pins = sumBy(h, 'estuary_requests', '_', (l) => l.status === 'reported')[0];
      const deals = sumBy(h, 'estuary_deals', '_', (l) => l.state === 'active')[0];
      return [
        { label: 'pins reported', values: pins ? perMinute(h.times, pins.values) : h.times.map(() => null) },
        { label: 'deals active', values: deals ? perMinute(h.times, deals.values) : h.times.map(() => null) },
      ];
    },
  },
  {
    key: 'bytes',
    title: 'Bytes pinned',
    unit: 'MiB',
    lines: (h) =>
      sumBy(h, 'estuary_dag_bytes', '_', (l) => HOLDING.has(l.status ?? '')).map((l) => ({
        label: 'DAG bytes held',
        values: l.values.map((v) => (v === null ? null : v / 2 ** 20)),
      })),
  },
  { key: 'replicas', title: 'Replicas by state', unit: 'replicas', lines: (h) => sumBy(h, 'estuary_deals', 'state') },
  {
    key: 'success',
    title: 'Deal success rate per SP',
    unit: 'ratio',
    lines: (h) => sumBy(h, 'estuary_provider_success_ratio', 'provider'),
  },
  {
    key: 'time',
    title: 'Time to an active deal per SP',
    unit: 'epochs',
    lines: (h) => sumBy(h, 'estuary_provider_activate_epochs', 'provider'),
  },
];

export class OperatorPage {
  #config: EstuaryConfig;
  #form: HTMLFormElement;
  #token: HTMLInputElement;
  #status: HTMLElement;
  #charts: HTMLElement;
  #plots = new Map<string, { plot: uPlot; lines: string; figure: HTMLElement }>();
  #poller = new Poller();

  constructor(config: EstuaryConfig) {
    this.#config = config;
    this.#form = document.getElementById('operator-form') as HTMLFormElement;
    this.#token = document.getElementById('operator-token') as HTMLInputElement;
    this.#status = document.getElementById('operator-status')!;
    this.#charts = document.getElementById('operator-charts')!;
    this.#token.value = sessionStorage.getItem(TOKEN_KEY) ?? '';
    this.#form.addEventListener('submit', (event) => {
      event.preventDefault();
      sessionStorage.setItem(TOKEN_KEY, this.#token.value.trim());
      this.enter();
    });
    window.addEventListener('resize', () => {
      for (const { plot, figure } of this.#plots.values()) plot.setSize(this.#size(figure));
    });
  }

  /** Shown: load the charts and follow them, if there is a token. */
  enter(): void {
    this.leave();
    if (!this.#token.value.trim()) {
      this.#status.textContent = 'The oracle’s API token shows its metrics (estuary dev writes it to .estuary/dev.json).';
      return;
    }
    this.#poller.start(async () => {
      // A read refused (a wrong token) stops following until the token is given again.
      if (!(await this.#load())) this.#poller.stop();
    }, REFRESH_MS);
  }

  /** Hidden: stop following. */
  leave(): void {
    this.#poller.stop();
  }

  /** Reads and draws the charts; false when the metrics could not be read (polling stops). */
  async #load(): Promise<boolean> {
    let history: MetricsHistory;
    try {
      history = await metricsHistory(this.#config.oracle_url, this.#token.value.trim(), NAMES);
    } catch (e) {
      this.#status.textContent = `The metrics could not be read: ${e instanceof Error ? e.message : String(e)}`;
      this.#status.dataset.state = 'error';
      return false;
    }
    const every = Math.round(history.every_ms / 1000);
    this.#status.textContent = `${history.times.length} samples, one every ${every} s${history.times.length < 2 ? ': the charts fill as samples come' : ''}.`;
    this.#status.dataset.state = 'ok';
    for (const spec of CHARTS) this.#draw(spec, history);
    return true;
  }

  #size(figure: HTMLElement): { width: number; height: number } {
    return { width: Math.max(240, figure.clientWidth - 8), height: 200 };
  }

  #draw(spec: ChartSpec, history: MetricsHistory): void {
    const lines = spec.lines(history).filter((l) => l.values.some((v) => v !== null));
    const data: uPlot.AlignedData = [history.times.map((t) => t / 1000), ...lines.map((l) => l.values)];
    const names = lines.map((l) => l.label).join('\u0000');
    let entry = this.#plots.get(spec.key);
    if (entry && entry.lines !== names) {
      entry.plot.destroy();
      entry.figure.remove();
      entry = undefined;
    }
    if (!entry) {
      const figure = document.createElement('figure');
      figure.className = 'chart';
      figure.dataset.testid = 'chart';
      figure.dataset.chart = spec.key;
      const caption = document.createElement('figcaption');
      caption.textContent = `${spec.title} (${spec.unit})`;
      figure.append(caption);
      this.#charts.append(figure);
      const options: uPlot.Options = {
        ...this.#size(figure),
        series: [
          {},
          ...lines.map((l, i) => ({ label: l.label, stroke: COLORS[i % COLORS.length], width: 2, spanGaps: true })),
        ],
        axes: [{}, { label: spec.unit, size: 60 }],
        legend: { live: false },
      };
      entry = { plot: new uPlot(options, data, figure), lines: names, figure };
      this.#plots.set(spec.key, entry);
      // Charts keep their order whatever order they were made in.
      for (const s of CHARTS) {
        const f = this.#plots.get(s.key)?.figure;
        if (f) this.#charts.append(f);
      }
    } else {
      entry.plot.setData(data);
    }
    entry.figure.dataset.series = String(lines.length);
    entry.figure.dataset.points = String(history.times.length);
  }
}
