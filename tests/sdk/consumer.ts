// A dapp using the SDK as shipped (www/dist/sdk: the built library and its declarations), not
// its sources: `scripts/test` type-checks this file, so a declaration the build stops emitting,
// or a signature that changes, fails the run. It is compiled, never run.
import {
  DownloadError,
  EstuaryNode,
  HttpError,
  NODE_WASM_URL,
  Pin,
  UploadError,
  nodeWasm,
  type DealStatus,
  type WasmSource,
  InclusionError,
  OracleError,
  DataDao,
  Perpetual,
  WrongChainError,
  switchChain,
  chainReader,
  checkDealsOnChain,
  pieceInclusion,
  recordedOnChain,
  ServeError,
  Wallet,
  loadConfig,
  requestStatus,
  type AddProgress,
  type AddResult,
  type DealCheck,
  type Inclusion,
  type PieceInclusion,
  type DaoProposal,
  type PerpetualOrder,
  type TxQuote,
  type Downloaded,
  type ImportProfile,
  type PinRecord,
  type Session,
  type UploadAuth,
} from '../../www/dist/sdk/estuary-sdk.js';

export async function addPinAndList(files: File[], eip1193: Parameters<typeof Wallet.connect>[0]): Promise<PinRecord[]> {
  const config = await loadConfig();
  const node = await EstuaryNode.start();
  const profile: ImportProfile = 'kubo-cidv1';
  const controller = new AbortController();
  const added: AddResult = await node.add(
    files.map((file) => ({ path: file.name, file })),
    {
      folder: files.length > 1,
      profile,
      signal: controller.signal,
      onProgress: (p: AddProgress) => console.log(p.bytes, p.total, p.blocks, p.stored),
    },
  );
  const wallet = await Wallet.connect(eip1193, config);
  // Uploads belong to someone: a session from signing in with the wallet (EIP-4361)…
  const session: Session = await wallet.signIn(config);
  const uploaded: { root: string } = await node.upload(added.car, config.oracle_url, {
    auth: { token: session.token },
    onProgress: ({ bytes }) => console.log(bytes),
  });
  console.log(uploaded.root, session.account, session.expires);
  // …a pre-signed URL an account made for this page…
  const presigned: UploadAuth = { presignedUrl: '/uploads?presigned=est_p_…' };
  console.log(presigned);
  const receipt = await wallet.pin(config, new Uint8Array(), { name: 'album', origins: [], sizeHint: BigInt(added.carSize) });
  // …or the wallet's own pin request, up to its size hint.
  await node.upload(added.car, config.oracle_url, { auth: await wallet.signRequestUpload(config, receipt.requestId) });
  const status = await requestStatus(config.oracle_url, receipt.requestId);
  console.log(status?.status, status?.piece_cid);
  try {
    const got: Downloaded = await node.download(added.root, config.oracle_url, { from: 'peer' });
    console.log(got.file.size, got.from, got.peerError, got.fromProviders);
  } catch (e) {
    if (e instanceof DownloadError || e instanceof ServeError) console.log(e.message);
  }
  return wallet.pins(config);
}

/** Is the pin's piece inside its deals? The oracle's proof, checked here and on chain. */
export async function verifyPin(node: EstuaryNode, requestId: bigint, piece: string): Promise<DealCheck[]> {
  const config = await loadConfig();
  let inclusion: PieceInclusion;
  try {
    inclusion = await pieceInclusion(config.oracle_url, piece);
  } catch (e) {
    if (e instanceof OracleError) console.log(e.status, e.code, e.url);
    throw e;
  }
  const reader = chainReader(config);
  console.log(await recordedOnChain(reader, config.contracts.EstuaryPinning, requestId, inclusion));
  if (inclusion.aggregate) {
    try {
      const found: Inclusion = await node.verifyInclusion(inclusion);
      console.log(found.offset, found.pieceSize, found.aggregateSize);
    } catch (e) {
      if (e instanceof InclusionError) console.log(e.message);
    }
  }
  return checkDealsOnChain(reader, config.contracts.DealStateView ?? '', inclusion);
}

/** A perpetual order for content added here, on the right chain, its cost shown first. */
export async function keepForever(added: AddResult, eip1193: Parameters<typeof Wallet.connect>[0]): Promise<PerpetualOrder> {
  const config = await loadConfig();
  let wallet: Wallet;
  try {
    wallet = await Wallet.connect(eip1193, config);
  } catch (e) {
    if (!(e instanceof WrongChainError) || !eip1193) throw e;
    console.log(`on ${e.current}, switching to ${e.expected}`);
    await switchChain(eip1193, config);
    wallet = await Wallet.connect(eip1193, config);
  }
  const perpetual = new Perpetual(config, wallet);
  const { minTerm } = await Perpetual.limits(config, chainReader(config));
  const { orderId } = await perpetual.createOrder(
    {
      pieceCid: added.pieceCidV1,
      payloadCid: added.root,
      paddedSize: added.paddedSize,
      carSize: added.carSize,
      replicas: 3,
      bounty: 10n ** 16n,
      term: minTerm,
      origins: [`${config.oracle_url}/piece/${added.pieceCidV2}`],
    },
    6n * 10n ** 16n,
    { onQuote: (q: TxQuote) => console.log(q.summary, q.maxCost), onSent: (hash: string) => console.log(hash) },
  );
  await perpetual.setReplicas(orderId, 4);
  const { blocks, active } = await perpetual.history(config, orderId);
  console.log(blocks.length, active.at(-1));
  return perpetual.getOrder(orderId);
}

/** A member proposes a CID to the DataDAO; the proposals, read without a wallet. */
export async function proposeToDao(wallet: Wallet, cid: string, size: number): Promise<DaoProposal[]> {
  const config = await loadConfig();
  const dao = new DataDao(config, wallet);
  if (await dao.isMember()) {
    const { proposalId } = await dao.propose(cid, size, { onQuote: (q: TxQuote) => console.log(q.summary) });
    console.log(await dao.hasVoted(proposalId));
  }
  return DataDao.proposals(config, chainReader(config));
}

/** A pin followed to Filecoin: its replicas, then each of its pieces checked against its deals. */
export async function followPin(requestId: bigint): Promise<DealStatus[]> {
  const config = await loadConfig();
  // The wasm compiled once (here from the URL the SDK ships it at) and given to the node.
  const wasm: WasmSource = await nodeWasm(NODE_WASM_URL);
  const node = await EstuaryNode.start({ wasm });
  const pin = new Pin(config.oracle_url, requestId);
  const deals = await pin.followDeals((d: DealStatus[]) => console.log(d.map((x) => `${x.provider} ${x.state}`)), {
    replicas: 3,
  });
  for (const inclusion of await pin.inclusion()) {
    if (inclusion.aggregate) await node.verifyInclusion(inclusion);
    console.log(await checkDealsOnChain(chainReader(config), config.contracts.DealStateView ?? '', inclusion));
  }
  try {
    await node.upload('missing.car', config.oracle_url);
  } catch (e) {
    // Every HTTP failure says where and how: the URL, the status and the server's code.
    if (e instanceof UploadError || e instanceof HttpError) console.log(e.url, e.status, e.code);
  }
  node.terminate();
  return pin.deals();
}
