export * from './errors';
export type { CidInfo, Inclusion, MemoryUse, PieceInfo, PieceProgress } from './protocol';
export {
  DownloadError,
  StorageError,
  UploadError,
  UPLOAD_CHUNK,
  type AddEntry,
  type AddProgress,
  type AddResult,
  type DownloadSource,
  type Downloaded,
  type ImportProfile,
  type Progress,
  type StoredCar,
} from './files';
export { ParallelPieceHasher, PieceWorkerPool, pieceOfBlob, type PieceWasm } from './piece';
export { EstuaryNode } from './node';
export { ServeError, type ServeStatus } from './serve';
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
  followDeals,
  listProviders,
  metricsHistory,
  followRequest,
  requestStatus,
  waitForRequest,
  type DealStatus,
  type MetricsHistory,
  type ProviderStatus,
  type PinRequestStatus,
  type RequestState,
} from './oracle';
export {
  chainReader,
  checkDealsOnChain,
  dealStateViewInterface,
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
export { DataDao, dataDaoInterface, type DaoProposal, type ProposalState } from './datadao';
export { type TxTarget } from './tx';
