/**
 * *Your files*: everything this browser added and this wallet pinned, one row per root CID, with
 * where it is on its way to Filecoin — added, uploaded, on chain, fetched, pinned, in a bucket,
 * deals proposed, active n of N, expiring — searched and filtered. The rows are built from the
 * CARs kept in this browser (`listCars`) and the wallet's pin requests (`Wallet.pins`, with the
 * oracle's `/requests/{id}` for each).
 */
import type { DealStatus, PinRecord, PinRequestStatus, StoredCar } from '../sdk';

/** A pin request of this wallet, with what the oracle says of it (null: not seen yet). */
export interface PinOfFile {
  record: PinRecord;
  status: PinRequestStatus | null;
}

/** One row: a root CID, its CAR if this browser keeps one, and this wallet's pins of it. */
export interface FileRow {
  root: string;
  car?: StoredCar;
  /** Newest first. */
  pins: PinOfFile[];
}

/** Which filter keeps a row. */
export type FileGroup = 'progress' | 'filecoin' | 'problem';

/** Where a row is, for people (`label`), for the filters (`group`) and for tests (`state`). */
export interface Stage {
  state: string;
  group: FileGroup;
  label: string;
}

/**
 * The rows of `cars` and `pins`, one per root CID: a pin and the CAR of the same content share a
 * row. Newest first (by the newest of its CAR's time and its pins' blocks, pins after CARs of the
 * same age).
 */
export function fileRows(cars: StoredCar[], pins: PinOfFile[]): FileRow[] {
  const rows = new Map<string, FileRow>();
  const order: string[] = [];
  const row = (root: string) => {
    let found = rows.get(root);
    if (!found) {
      found = { root, pins: [] };
      rows.set(root, found);
      order.push(root);
    }
    return found;
  };
  // The pins newest first (the chain's order), then the CARs newest first, not yet pinned.
  for (const pin of [...pins].sort((a, b) => Number(b.record.requestId - a.record.requestId))) {
    row(pin.record.cid).pins.push(pin);
  }
  for (const car of cars) row(car.root).car ??= car;
  return order.map((root) => rows.get(root)!);
}

const PROBLEMS = new Set(['failing', 'failed', 'quarantined', 'cancelled']);
/** Deal states that end a replica for good (a `lost` or `reopened` one is being replaced). */
const GONE = new Set(['expired', 'slashed', 'failed', 'not_found', 'mismatch']);
const STEP_LABELS: Record<string, string> = {
  queued: 'on chain, queued at the oracle',
  fetching: 'being fetched by the oracle',
  pinned: 'pinned',
  packed: 'pinned and packed, waiting for a bucket',
  reported: 'pinned, reported on chain',
};

/** How many of `deals` are in each of `states`. */
function count(deals: DealStatus[], ...states: string[]): number {
  return deals.filter((d) => states.includes(d.state)).length;
}

/**
 * The replicas of the part with the fewest active (a split pin's parts each have their own
 * deals), or all of them for a pin that is one piece.
 */
function weakestPart(deals: DealStatus[]): DealStatus[] {
  const parts = new Map<string, DealStatus[]>();
  for (const d of deals) parts.set(d.deal_piece_cid, [...(parts.get(d.deal_piece_cid) ?? []), d]);
  if (parts.size <= 1) return deals;
  return [...parts.values()].reduce((a, b) => (count(b, 'active', 'expiring') < count(a, 'active', 'expiring') ? b : a));
}

/** Where `row` stands: its newest pin's state through deals, or its CAR's upload. */
export function stageOf(row: FileRow): Stage {
  const pin = row.pins[0];
  if (pin) {
    const s = pin.status;
    if (!s) return { state: 'on chain', group: 'progress', label: 'on chain, not seen by the oracle yet' };
    if (PROBLEMS.has(s.status)) {
      const label = s.reason ? `${s.status}: ${s.reason}` : s.status;
      return { state: s.status, group: 'problem', label };
    }
    const replicas = s.replicas;
    // A pin split across pieces stands where its least kept part stands.
    const deals = weakestPart(s.deals ?? []);
    const active = replicas?.active ?? count(deals, 'active', 'expiring');
    const target = replicas?.target ?? deals.length;
    if (replicas?.failed) return { state: 'failed', group: 'problem', label: 'its deal order failed' };
    if (count(deals, 'expiring') > 0) {
      return { state: 'expiring', group: 'filecoin', label: `deals active ${active} of ${target}, some expiring (being renewed)` };
    }
    if (active > 0) return { state: 'active', group: 'filecoin', label: `deals active ${active} of ${target}` };
    const proposed = count(deals, 'claimed', 'published');
    if (proposed > 0) {
      const published = count(deals, 'published');
      return { state: 'proposed', group: 'progress', label: `deals proposed ${proposed} of ${target} (${published} published)` };
    }
    const replacing = count(deals, 'lost', 'reopened');
    if (replacing > 0) return { state: 'replacing', group: 'progress', label: `deals ended: being replaced at other storage providers` };
    const gone = deals.filter((d) => GONE.has(d.state));
    if (gone.length > 0) {
      return { state: 'ended', group: 'problem', label: `deals ended (${[...new Set(gone.map((d) => d.state))].join(', ')})` };
    }
    if (replicas) return { state: 'ordered', group: 'progress', label: `deals ordered: waiting for ${target} storage providers` };
    if (s.bucket?.state === 'open') {
      return { state: 'bucket', group: 'progress', label: `in bucket #${s.bucket.id}, waiting for it to fill` };
    }
    return { state: s.status, group: 'progress', label: STEP_LABELS[s.status] ?? s.status };
  }
  const car = row.car!;
  if (car.uploaded) return { state: 'uploaded', group: 'progress', label: 'uploaded, not pinned yet' };
  if (car.uploadedBytes !== null) {
    const percent = Math.floor((100 * car.uploadedBytes) / Math.max(car.carSize, 1));
    return { state: 'paused', group: 'progress', label: `upload paused at ${percent} %` };
  }
  return { state: 'added', group: 'progress', label: 'added in this browser, not uploaded' };
}

/** What a row can do with its CAR. */
export interface CarActions {
  /** Shows the CAR as the one added (and resumes its upload when it is not uploaded). */
  select(car: StoredCar): void;
  /** Removes the CAR from this browser's storage. */
  remove(car: StoredCar): void;
}

/** The list: rows rendered into `list`, kept by `search` and `state`, counted in `hint`. */
export class FilesList {
  #rows = 0;
  /** What the rows shown were made from: the same again is not drawn again (focus stays). */
  #shown = '';

  constructor(
    private readonly list: HTMLUListElement,
    private readonly search: HTMLInputElement,
    private readonly state: HTMLSelectElement,
    private readonly hint: HTMLElement,
    private readonly actions: CarActions,
    private readonly size: (bytes: number) => string,
  ) {
    search.addEventListener('input', () => this.filter());
    state.addEventListener('change', () => this.filter());
  }

  /** Shows `rows` (or says why there are none: `empty`). */
  render(rows: FileRow[], empty: string): void {
    const drawn = JSON.stringify(rows, (_, v: unknown) => (typeof v === 'bigint' ? v.toString() : v));
    if (drawn === this.#shown) return;
    this.#shown = drawn;
    this.#rows = rows.length;
    this.list.replaceChildren(...rows.map((row) => this.#item(row)));
    this.list.dataset.loaded = 'true';
    if (!rows.length) this.hint.textContent = empty;
    this.filter();
  }

  #item(row: FileRow): HTMLLIElement {
    const stage = stageOf(row);
    const li = document.createElement('li');
    li.dataset.root = row.root;
    li.dataset.state = stage.state;
    li.dataset.group = stage.group;
    // Every request of this wallet for the root (`#12` finds request 12), newest first.
    li.dataset.requests = row.pins.map((p) => String(p.record.requestId)).join(' ');
    if (row.pins[0]?.status) li.dataset.status = row.pins[0].status.status;

    const cid = document.createElement('code');
    cid.textContent = row.root;
    const label = document.createElement('strong');
    label.className = 'file-state';
    label.dataset.testid = 'file-state';
    label.textContent = stage.label;
    li.append(cid, ' · ', label);

    const details: (string | Node)[] = [];
    const piece = row.pins[0]?.status?.piece_cid ?? row.car?.pieceCidV2;
    if (row.car) details.push(`${this.size(row.car.carSize)}, kept in this browser`);
    if (piece) details.push(`piece ${piece}`);
    for (const pin of row.pins) {
      const link = document.createElement('a');
      link.href = `#/pin/${pin.record.requestId}`;
      link.textContent = `#${pin.record.requestId}`;
      link.title = `Pin request ${pin.record.requestId} (block ${pin.record.block})`;
      details.push(link);
    }
    if (details.length) {
      const small = document.createElement('span');
      small.className = 'file-details';
      details.forEach((d, i) => small.append(...(i ? [' · ', d] : [d])));
      li.append(small);
    }

    // What the search looks in: the row's words, not its buttons'.
    li.dataset.text = [row.root, stage.label, piece ?? '', ...row.pins.map((p) => `#${p.record.requestId}`)].join(' ').toLowerCase();
    const car = row.car;
    if (car) {
      li.dataset.car = car.car;
      const pick = document.createElement('button');
      pick.type = 'button';
      pick.textContent = car.uploaded ? 'Select' : 'Resume upload';
      pick.dataset.testid = 'car-select';
      pick.addEventListener('click', () => this.actions.select(car));
      const remove = document.createElement('button');
      remove.type = 'button';
      remove.textContent = 'Remove';
      remove.setAttribute('aria-label', `Remove ${row.root} from this browser`);
      remove.addEventListener('click', () => this.actions.remove(car));
      li.append(pick, remove);
    }
    return li;
  }

  /** Shows the rows the search (any part of a row; `#12`: request 12 only) and the state keep. */
  filter(): void {
    const text = this.search.value.trim().toLowerCase();
    const group = this.state.value;
    const id = /^#\d+$/.test(text) ? text.slice(1) : undefined;
    let shown = 0;
    for (const li of this.list.querySelectorAll<HTMLLIElement>(':scope > li')) {
      const found =
        id !== undefined ? (li.dataset.requests ?? '').split(' ').includes(id) : (li.dataset.text ?? '').includes(text);
      const ok = (!text || found) && (!group || li.dataset.group === group);
      li.hidden = !ok;
      if (ok) shown++;
    }
    this.list.dataset.shown = String(shown);
    if (this.#rows > 0) this.hint.textContent = shown ? '' : 'Nothing matches the search.';
  }
}
