/**
 * Every error the Estuary SDK throws, in one place. Each has a `name` to tell it by (kept across
 * the node's worker boundary), a `message` in plain words, and its fields: `HttpError`s carry
 * `url`, `status` and `code`, `ContractError` the `reason` (the contract's custom error),
 * `WrongChainError` the chains.
 */

/** Base class of every error the Estuary SDK throws. */
export class EstuaryError extends Error {
  override name = 'EstuaryError';
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
  }
}

/** The text given is not a CID. `message` says what is wrong. */
export class InvalidCidError extends EstuaryError {
  override name = 'InvalidCidError';
}

/** The browser node (WebAssembly in a Web Worker) failed to start or crashed. */
export class NodeError extends EstuaryError {
  override name = 'NodeError';
}

/** No wallet, a refused connection, the wrong chain, or a rejected transaction. */
export class WalletError extends EstuaryError {
  override name = 'WalletError';
}

/** The wallet is on another chain than the stack's (`switchChain` offers the right one). */
export class WrongChainError extends WalletError {
  override name = 'WrongChainError';
  constructor(
    message: string,
    /** The chain the wallet is on. */
    readonly current: number,
    /** The stack's chain. */
    readonly expected: number,
    options?: { cause?: unknown },
  ) {
    super(message, options);
  }
}

/** The contract reverted the call; `reason` names its custom error. */
export class ContractError extends EstuaryError {
  override name = 'ContractError';
  constructor(
    message: string,
    readonly reason: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
  }
}

/** Where an HTTP exchange failed: the URL asked, the status and the server's error code. */
export interface HttpFields {
  /** The URL asked, when known. */
  url?: string;
  /** The HTTP status, when the server answered. */
  status?: number;
  /** The server's error code (`NOT_FOUND`, `BUSY`, `TOO_LARGE`, …), when it gave one. */
  code?: string;
}

/** An SDK error about an HTTP exchange, with its `url`, `status` and `code` where known. */
export class HttpError extends EstuaryError implements HttpFields {
  override name = 'HttpError';
  readonly url?: string;
  readonly status?: number;
  readonly code?: string;
  constructor(message: string, options?: { cause?: unknown } & HttpFields) {
    super(message, options);
    this.url = options?.url;
    this.status = options?.status;
    this.code = options?.code;
  }
}

/** The oracle's API failed or could not be reached. */
export class OracleError extends HttpError {
  override name = 'OracleError';
}

/** The oracle refused or failed an upload (`status` and `code` say how, when it answered). */
export class UploadError extends HttpError {
  override name = 'UploadError';
}

/** A download failed verification or could not be fetched (`url`, `status` for a gateway's answer). */
export class DownloadError extends HttpError {
  override name = 'DownloadError';
}

/** The browser's storage is full or unavailable. */
export class StorageError extends EstuaryError {
  override name = 'StorageError';
}

/** The node could not connect to the oracle over libp2p or index the stored CARs. */
export class ServeError extends EstuaryError {
  override name = 'ServeError';
}

/** An inclusion proof does not show the piece inside the aggregate; `message` says which check failed. */
export class InclusionError extends EstuaryError {
  override name = 'InclusionError';
}

/** The operation was cancelled through its `AbortSignal`. */
export class CancelledError extends EstuaryError {
  override name = 'CancelledError';
}
