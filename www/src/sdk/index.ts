export * from './errors';
export type { CidInfo, Inclusion, MemoryUse, PieceInfo, PieceProgress } from './protocol';
export type { AddEntry, AddProgress, AddResult, ImportProfile, Progress } from './import';
export { UPLOAD_CHUNK } from './upload';
export type { DownloadSource, Downloaded } from './download';
export { carFile, type StoredCar } from './storage';
export { ParallelPieceHasher, PieceWorkerPool, pieceOfBlob, type PieceWasm } from './piece';
export { EstuaryNode } from './node';
export { NODE_WASM_URL, nodeWasm, type WasmSource } from './wasm';
export type { ServeStatus } from './serve';
export { loadConfig, type EstuaryConfig } from './config';
export {
  requestUploadMessage,
  signIn,
  siweMessage,
  type MessageSigner,
  type Session,
  type SiweFields,
  type UploadAuth,
} from './auth';
export {
  Wallet,
  chainName,
  coinOf,
  epochTimes,
  explain,
  switchChain,
  walletChain,
  watchAccounts,
  watchChain,
  type PinOptions,
  type PinQuote,
  type PinReceipt,
  type PinRecord,
} from './chain';
export {
  FINAL_STATES,
  metricsHistory,
  followRequest,
  requestStatus,
  waitForRequest,
  type MetricsHistory,
  type PinRequestStatus,
  type RequestState,
} from './oracle';
export { Pin, followDeals, listProviders, type DealStatus, type ProviderStatus } from './deals';
export {
  chainReader,
  checkDealsOnChain,
  dealStateViewInterface,
  pieceCommitment,
  pieceInclusion,
  recordedOnChain,
  type AggregateInclusion,
  type DealCheck,
  type MarketState,
  type PieceInclusion,
  type ProofData,
} from './inclusion';
export {
  Perpetual,
  perpetualInterface,
  type OpenSlots,
  type OrderParams,
  type PerpetualLimits,
  type PerpetualOrder,
  type ReplicaHistory,
  type TxDone,
  type TxHooks,
  type TxQuote,
} from './perpetual';
export { DealProposals, dealClientInterface, type DealProposal } from './dealclient';
export { DataDao, dataDaoInterface, type DaoProposal, type ProposalState } from './datadao';
export { type TxTarget } from './tx';
