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

/** The oracle's API failed or could not be reached. */
export class OracleError extends EstuaryError {
  override name = 'OracleError';
  /** The URL asked, when known. */
  readonly url?: string;
  /** The HTTP status, when the oracle answered. */
  readonly status?: number;
  /** The oracle's error code (`NOT_FOUND`, `BUSY`, …), when it gave one. */
  readonly code?: string;
  constructor(message: string, options?: { cause?: unknown; url?: string; status?: number; code?: string }) {
    super(message, options);
    this.url = options?.url;
    this.status = options?.status;
    this.code = options?.code;
  }
}

/** An inclusion proof does not show the piece inside the aggregate; `message` says which check failed. */
export class InclusionError extends EstuaryError {
  override name = 'InclusionError';
}

/** The operation was cancelled through its `AbortSignal`. */
export class CancelledError extends EstuaryError {
  override name = 'CancelledError';
}
