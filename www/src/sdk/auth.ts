/**
 * Upload rights at the oracle without an operator: Sign-In with Ethereum (EIP-4361) for a
 * session token bound to the wallet's address, or a signature tying an upload to the wallet's
 * own on-chain pin request. An account's operator can also hand a page a pre-signed upload URL
 * (`POST /uploads/presign` with its write token) or a token.
 */
import { OracleError } from './errors';

/** What lets an upload be created (`node.upload(car, oracleUrl, { auth })`). */
export type UploadAuth =
  /** A bearer token: an account's write token, or a session from `signIn`. */
  | { token: string }
  /** A pre-signed upload URL (`/uploads?presigned=…`, absolute or relative to the oracle). */
  | { presignedUrl: string }
  /** The upload is the content of pin request `request`, signed for by its requester (`signRequestUpload`). */
  | { request: string; signature: string };

/** A session given by `signIn`. */
export interface Session {
  /** The bearer token (scope `upload`). */
  token: string;
  /** The account it is bound to: the checksummed address. */
  account: string;
  /** When it ends (RFC 3339). */
  expires: string;
}

/** Something that signs EIP-191 (`personal_sign`) messages: an ethers `Signer`, say. */
export interface MessageSigner {
  signMessage(message: string): Promise<string>;
}

/** The fields of an EIP-4361 message. */
export interface SiweFields {
  domain: string;
  address: string;
  statement?: string;
  uri: string;
  chainId: number;
  nonce: string;
  issuedAt: string;
  expirationTime?: string;
}

/** The EIP-4361 message text for `fields` (the ABNF's order and line breaks). */
export function siweMessage(f: SiweFields): string {
  const lines = [`${f.domain} wants you to sign in with your Ethereum account:`, f.address, ''];
  if (f.statement) lines.push(f.statement);
  lines.push('', `URI: ${f.uri}`, 'Version: 1', `Chain ID: ${f.chainId}`, `Nonce: ${f.nonce}`, `Issued At: ${f.issuedAt}`);
  if (f.expirationTime) lines.push(`Expiration Time: ${f.expirationTime}`);
  return lines.join('\n');
}

/** The text a requester signs to upload the content of request `requestId` (as the oracle checks it). */
export function requestUploadMessage(chainId: number, contract: string, requestId: bigint | string): string {
  return `Upload to Estuary the content of pin request ${requestId}\nChain ID: ${chainId}\nContract: ${contract}`;
}

async function oracleJson(url: string, init: RequestInit): Promise<Record<string, string>> {
  let res: Response;
  try {
    res = await fetch(url, init);
  } catch (e) {
    throw new OracleError(`The oracle at ${url} cannot be reached.`, { cause: e });
  }
  const body = (await res.json().catch(() => ({}))) as Record<string, string>;
  if (!res.ok) throw new OracleError(`The oracle refused the sign-in: ${body.error ?? `HTTP ${res.status}`}`);
  return body;
}

/**
 * Signs in to the oracle at `oracleUrl` with the wallet's `address` (EIP-4361): asks for a nonce,
 * has `signer` sign a message naming this page's host (`domain`, default `location.host`), the
 * chain and an expiry, and returns the session. The session may create uploads (owned by the
 * address, within the oracle's wallet quota) until it expires.
 */
export async function signIn(
  oracleUrl: string,
  signer: MessageSigner,
  address: string,
  chainId: number,
  options: { domain?: string; uri?: string; statement?: string; expiresInSeconds?: number } = {},
): Promise<Session> {
  const { nonce } = await oracleJson(`${oracleUrl}/auth/nonce`, { method: 'POST' });
  const now = new Date();
  const message = siweMessage({
    domain: options.domain ?? globalThis.location.host,
    address,
    statement: options.statement ?? 'Sign in to upload to Estuary.',
    uri: options.uri ?? globalThis.location.origin,
    chainId,
    nonce: nonce!,
    issuedAt: now.toISOString(),
    expirationTime: new Date(now.getTime() + (options.expiresInSeconds ?? 12 * 3600) * 1000).toISOString(),
  });
  const signature = await signer.signMessage(message);
  const session = await oracleJson(`${oracleUrl}/auth/siwe`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ message, signature }),
  });
  return { token: session.token!, account: session.account!, expires: session.expires! };
}

/** Base64 of UTF-8 text, as tus's `Upload-Metadata` carries values. */
export function base64(text: string): string {
  let binary = '';
  for (const b of new TextEncoder().encode(text)) binary += String.fromCharCode(b);
  return btoa(binary);
}
