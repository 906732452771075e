/**
 * Upload: a CAR from the browser's storage to the oracle over tus 1.0.0, resumable after a lost
 * connection or a reload — run inside the node's Web Worker.
 */
import { type UploadAuth, base64 } from './auth';
import { UploadError } from './errors';
import type { Progress } from './import';
import { carFile, carsDir, readJson, readState, tusHeaders, writeJson, writeState } from './storage';

/** Chunk size of upload requests: at most this much is sent again after a failure. */
export const UPLOAD_CHUNK = 4 << 20;

/**
 * An upload URL as an error may show it: without its query (a pre-signed URL's secret) and
 * without the upload's own id (whoever has it may append to the upload), since errors get logged.
 */
function shown(url: string): string {
  try {
    const u = new URL(url);
    const path = u.pathname.replace(/\/uploads\/[^/]+$/, '/uploads/…');
    return `${u.origin}${path}`;
  } catch {
    return '';
  }
}

/** Why the oracle refused, from its JSON error body, with the status and code it gave. */
async function refusal(response: Response, url: string): Promise<UploadError> {
  const body = (await response.json().catch(() => ({}))) as { error?: string; code?: string };
  const why = body.error ?? `HTTP ${response.status}`;
  return new UploadError(`The oracle refused the upload: ${why}`, { url, status: response.status, code: body.code });
}

/**
 * Uploads CAR `name` to the oracle at `oracleUrl` with the tus 1.0.0 protocol (resumable: the
 * upload's URL is kept with the CAR, so after a reload or a lost connection it continues from
 * what the oracle has). `auth` says who the upload is for (a session from `signIn`, a write
 * token, a pre-signed URL, or the signature of the pin request it is the content of); it is
 * needed to start an upload, not to resume one. Resolves with the CAR's root once the oracle has
 * verified every block.
 */
export async function uploadCar(
  name: string,
  oracleUrl: string,
  auth: UploadAuth | undefined,
  onProgress?: (p: Progress) => void,
  signal?: AbortSignal,
): Promise<{ root: string }> {
  const dir = await carsDir();
  const file = await carFile(name);
  let state = await readState(dir, name);
  let offset = 0;
  if (state) {
    const head = await fetch(state.url, { method: 'HEAD', headers: tusHeaders(state.token), signal }).catch(() => null);
    if (head?.ok) offset = Number(head.headers.get('upload-offset') ?? 0);
    else state = null;
  }
  if (!state) {
    if (!auth) throw new UploadError('The oracle takes uploads from signed-in accounts only: sign in first.');
    const token = 'token' in auth ? auth.token : undefined;
    const headers: Record<string, string> = { ...tusHeaders(token), 'upload-length': String(file.size) };
    if ('request' in auth) {
      headers['upload-metadata'] = `request ${base64(auth.request)},signature ${base64(auth.signature)}`;
    }
    const endpoint = 'presignedUrl' in auth ? new URL(auth.presignedUrl, oracleUrl).toString() : `${oracleUrl}/uploads`;
    const created = await fetch(endpoint, { method: 'POST', headers, signal }).catch((e: unknown) => {
      throw new UploadError(`The oracle at ${oracleUrl} cannot be reached.`, { cause: e, url: shown(endpoint) });
    });
    if (created.status !== 201) throw await refusal(created, shown(endpoint));
    state = { url: new URL(created.headers.get('location') ?? '', oracleUrl).toString(), size: file.size, token };
    await writeState(dir, name, state);
  }
  let failures = 0;
  for (;;) {
    signal?.throwIfAborted();
    onProgress?.({ bytes: offset, total: file.size });
    const chunk = file.slice(offset, Math.min(offset + UPLOAD_CHUNK, file.size));
    let response: Response;
    try {
      response = await fetch(state.url, {
        method: 'PATCH',
        headers: { ...tusHeaders(state.token), 'upload-offset': String(offset), 'content-type': 'application/offset+octet-stream' },
        body: chunk,
        signal,
      });
    } catch (e) {
      if (signal?.aborted) throw e;
      // Connection lost: ask what arrived and go on from there.
      if (++failures > 8) throw new UploadError('The upload keeps failing: the oracle cannot be reached.', { cause: e });
      await new Promise((r) => setTimeout(r, 250 * 2 ** failures));
      const head = await fetch(state.url, { method: 'HEAD', headers: tusHeaders(state.token) }).catch(() => null);
      if (head?.ok) offset = Number(head.headers.get('upload-offset') ?? offset);
      continue;
    }
    failures = 0;
    if (response.status === 204 || response.status === 409) {
      offset = Number(response.headers.get('upload-offset') ?? offset);
      const root = response.headers.get('upload-root');
      if (response.status === 204 && offset >= file.size && root) {
        onProgress?.({ bytes: file.size, total: file.size });
        await dir.removeEntry(`${name}.upload`).catch(() => {});
        const meta = await readJson<Record<string, unknown>>(dir, `${name}.json`);
        if (meta) await writeJson(dir, `${name}.json`, { ...meta, uploaded: true });
        return { root };
      }
      continue;
    }
    throw await refusal(response, shown(state.url));
  }
}
