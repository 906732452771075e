/**
 * Storage: the CARs this browser made, kept in its Origin Private File System with what is known
 * of them (`<car>.json`) and of their uploads (`<car>.upload`) — run inside the node's Web Worker.
 */
import { StorageError } from './errors';
import type { AddResult } from './import';

/** The folder of the browser's storage where CARs are kept. */
export async function carsDir(): Promise<FileSystemDirectoryHandle> {
  try {
    const root = await navigator.storage.getDirectory();
    return await root.getDirectoryHandle('cars', { create: true });
  } catch (e) {
    throw new StorageError(`The browser's storage is not available: ${String(e)}`, { cause: e });
  }
}

/** What `appender` writes through: an OPFS file's sync access handle (worker-only). */
export interface SyncWriter {
  write(buffer: Uint8Array, options: { at: number }): number;
}

/** CAR `name` kept in this browser, as a file (in any thread). */
export async function carFile(name: string): Promise<File> {
  const dir = await carsDir();
  try {
    return await (await dir.getFileHandle(name)).getFile();
  } catch (e) {
    throw new StorageError(`There is no CAR named ${name} in this browser.`, { cause: e });
  }
}

/** Appends to an OPFS file through its sync access handle, keeping the offset reached. */
export function appender(out: SyncWriter): { write(bytes: Uint8Array): void; readonly offset: number } {
  let offset = 0;
  return {
    write(bytes: Uint8Array) {
      if (bytes.length === 0) return;
      try {
        out.write(bytes, { at: offset });
      } catch (e) {
        throw storageError(e);
      }
      offset += bytes.length;
    },
    get offset() {
      return offset;
    },
  };
}

export function storageError(e: unknown): Error {
  if (e instanceof DOMException && e.name === 'QuotaExceededError') {
    return new StorageError('The browser ran out of storage for this upload (quota exceeded). Free some space or add less.', { cause: e });
  }
  return e instanceof Error ? e : new Error(String(e));
}

/** Removes a CAR (and its upload state) from the browser's storage. */
export async function removeCar(name: string): Promise<void> {
  const dir = await carsDir();
  for (const suffix of ['', '.upload', '.json']) await dir.removeEntry(`${name}${suffix}`).catch(() => {});
}

/** A CAR kept in this browser, as `listCars` reports it. */
export interface StoredCar extends AddResult {
  addedAt: number;
  /** Whether the oracle has the whole CAR. */
  uploaded: boolean;
  /** Bytes the oracle had when last asked, for an upload under way (resume it with `upload`). */
  uploadedBytes: number | null;
}

export async function writeJson(dir: FileSystemDirectoryHandle, name: string, value: unknown): Promise<void> {
  const handle = await dir.getFileHandle(name, { create: true });
  const access = await handle.createSyncAccessHandle();
  const bytes = new TextEncoder().encode(JSON.stringify(value));
  access.truncate(0);
  access.write(bytes, { at: 0 });
  access.flush();
  access.close();
}

export async function readJson<T>(dir: FileSystemDirectoryHandle, name: string): Promise<T | null> {
  try {
    return JSON.parse(await (await (await dir.getFileHandle(name)).getFile()).text()) as T;
  } catch {
    return null;
  }
}

/** The CARs kept in this browser (newest first), with their upload progress. */
export async function listCars(): Promise<StoredCar[]> {
  const dir = await carsDir();
  const out: StoredCar[] = [];
  for await (const name of (dir as unknown as { keys(): AsyncIterable<string> }).keys()) {
    if (!name.endsWith('.car.json')) continue;
    const meta = await readJson<Omit<StoredCar, 'uploadedBytes'>>(dir, name);
    if (!meta) continue;
    const state = await readState(dir, meta.car);
    let uploadedBytes: number | null = null;
    if (state && !meta.uploaded) {
      const head = await fetch(state.url, { method: 'HEAD', headers: tusHeaders(state.token) }).catch(() => null);
      uploadedBytes = head?.ok ? Number(head.headers.get('upload-offset') ?? 0) : 0;
    }
    // CARs added before profiles were recorded used the default one.
    out.push({ ...meta, profile: meta.profile ?? 'unixfs-v1-2025', uploadedBytes });
  }
  return out.sort((a, b) => b.addedAt - a.addedAt);
}

/** An upload under way, kept beside its CAR so a reload resumes it. */
export interface UploadState {
  url: string;
  size: number;
  /** The bearer token it was made with (a session or a write token), if any. */
  token?: string;
}

export async function readState(dir: FileSystemDirectoryHandle, name: string): Promise<UploadState | null> {
  try {
    const file = await (await dir.getFileHandle(`${name}.upload`)).getFile();
    return JSON.parse(await file.text()) as UploadState;
  } catch {
    return null;
  }
}

export async function writeState(dir: FileSystemDirectoryHandle, name: string, state: UploadState): Promise<void> {
  await writeJson(dir, `${name}.upload`, state);
}

/** The headers of every tus request, with the bearer token if there is one. */
export function tusHeaders(token?: string): Record<string, string> {
  return token ? { 'tus-resumable': '1.0.0', authorization: `Bearer ${token}` } : { 'tus-resumable': '1.0.0' };
}
