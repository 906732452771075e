/**
 * Sending a contract transaction from the wallet the way every page does: estimated and quoted
 * first (what it does, its value, its most gas and cost: `onQuote`, before the wallet opens),
 * sent with the quote's fee fields and the chain id (the most it costs holds unless the wallet
 * changes them, as a person may in it), its hash
 * reported once sent (`onSent`), then mined; a refusal said in words, naming the contract's
 * custom error.
 */
import { Contract, type Interface, type Log, isError } from 'ethers';
import { type Wallet, coinOf, feeFields, revertOf, shortMessage } from './chain';
import { ContractError, EstuaryError, WalletError } from './errors';

/** What a transaction will do and its most it can cost, shown before the wallet opens. */
export interface TxQuote {
  /** What it does, in words. */
  action: string;
  /** Value sent, wei. */
  value: bigint;
  gasLimit: bigint;
  /** `value + gasLimit × max fee per gas`. */
  maxCost: bigint;
  /** All of it in a sentence. */
  summary: string;
}

/** Hooks a transaction calls: its quote before the wallet opens, its hash once sent. */
export interface TxHooks {
  onQuote?: (quote: TxQuote) => void;
  onSent?: (txHash: string) => void;
}

/** A mined transaction. */
export interface TxDone {
  txHash: string;
  block: number;
}

/** A contract, the name it is shown by, and its custom errors in words. */
export interface TxTarget {
  address: string;
  name: string;
  iface: Interface;
  errors: Record<string, string>;
}

/** An ethers failure as an SDK error, naming `target`'s custom error in words. */
export function explainTx(target: TxTarget, e: unknown): EstuaryError {
  if (isError(e, 'ACTION_REJECTED')) {
    return new WalletError('You rejected the transaction in your wallet.', { cause: e });
  }
  const decoded = revertOf(target.iface, e);
  if (decoded) {
    const words = target.errors[decoded.name] ?? decoded.name;
    return new ContractError(`The contract refused: ${words}.`, decoded.name, { cause: e });
  }
  if (isError(e, 'CALL_EXCEPTION')) {
    // Mined and reverted (a receipt), or refused without a custom error.
    const mined = e.receipt ? ` (mined in block ${e.receipt.blockNumber}: its gas is spent)` : '';
    return new ContractError(`The contract reverted${mined}: ${shortMessage(e)}`, e.reason ?? 'unknown', { cause: e });
  }
  return new EstuaryError(`The transaction could not be sent: ${shortMessage(e)}`, { cause: e });
}

/** Sends `method(args)` to `target` with `value` from `wallet` on chain `chainId` (see the module). */
export async function sendTx(
  wallet: Wallet,
  chainId: number,
  target: TxTarget,
  action: string,
  method: string,
  args: unknown[],
  value: bigint,
  hooks: TxHooks,
): Promise<TxDone & { logs: readonly Log[] }> {
  try {
    const contract = new Contract(target.address, target.iface, await wallet.provider.getSigner(wallet.address));
    const call = contract.getFunction(method);
    const gasLimit = ((await call.estimateGas(...args, { value })) * 12n) / 10n;
    const { perGas, fields } = await feeFields(wallet.provider, chainId);
    const maxCost = value + gasLimit * perGas;
    hooks.onQuote?.({
      action,
      value,
      gasLimit,
      maxCost,
      summary: `${action}: sends ${coinOf(value, chainId)} and at most ${gasLimit} gas to ${target.name} ${target.address}, ${coinOf(maxCost, chainId)} in all at most`,
    });
    const tx = await call(...args, { value, gasLimit, ...fields });
    hooks.onSent?.(tx.hash);
    const receipt = await tx.wait();
    if (!receipt || receipt.status !== 1) throw new EstuaryError('The transaction failed.');
    return { txHash: receipt.hash, block: receipt.blockNumber, logs: receipt.logs };
  } catch (e) {
    if (e instanceof EstuaryError) throw e;
    throw explainTx(target, e);
  }
}

/** The first event `name` of `iface` among `logs` (emitted by `address`, if given). */
export function eventIn(iface: Interface, logs: readonly Log[], name: string, address?: string) {
  for (const log of logs) {
    if (address && log.address.toLowerCase() !== address.toLowerCase()) continue;
    try {
      const parsed = iface.parseLog(log);
      if (parsed?.name === name) return parsed;
    } catch {
      // Another contract's event.
    }
  }
  return null;
}
