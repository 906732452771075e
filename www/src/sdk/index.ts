export * from './errors';
export type { CidInfo } from './protocol';
export { EstuaryNode } from './node';
export { loadConfig, type EstuaryConfig } from './config';
export { Wallet, explain, type PinReceipt } from './chain';
export { requestStatus, waitForRequest, type PinRequestStatus } from './oracle';
